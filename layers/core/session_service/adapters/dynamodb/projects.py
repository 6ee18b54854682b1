"""Project records in the projects table (pk=<project_id>, sk="project")."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.update import Action

from session_service.adapters.dynamodb.tables import Tables, condition_failed, dynamodb_errors
from session_service.domain.entities import Project


class DynamoProjectStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def create(self, project: Project) -> None:
        P = self._t.ProjectItem
        item = P(pk=project.project_id, sk="project", name=project.name, created_at=project.created_at)
        with dynamodb_errors("create_project"):
            item.save(condition=P.pk.does_not_exist())

    def get(self, project_id: str) -> Project | None:
        with dynamodb_errors("get_project"):
            try:
                item = self._t.ProjectItem.get(project_id, "project", consistent_read=True)
            except DoesNotExist:
                return None
        return Project(
            project_id=item.pk,
            name=item.name or "",
            created_at=item.created_at or "",
            rate_limit_per_minute=_whole(item.rate_limit_per_minute),
            compute_rate_limit_per_minute=_whole(item.compute_rate_limit_per_minute),
        )

    def set_limits(self, project_id: str, per_minute: int | None, compute_per_minute: int | None) -> bool:
        P = self._t.ProjectItem
        actions: list[Action] = [
            P.rate_limit_per_minute.set(per_minute) if per_minute else P.rate_limit_per_minute.remove(),
            (
                P.compute_rate_limit_per_minute.set(compute_per_minute)
                if compute_per_minute
                else P.compute_rate_limit_per_minute.remove()
            ),
        ]
        item = P(pk=project_id, sk="project")
        with dynamodb_errors("set_project_limits"):
            try:
                item.update(actions=actions, condition=P.pk.exists())
            except UpdateError as error:
                if condition_failed(error):
                    return False
                raise
        return True


def _whole(value: float | None) -> int | None:
    return int(value) if value else None
