"""Project records in the projects table (pk=<project_id>, sk="project")."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors
from session_service.models import Project


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
        return Project(project_id=item.pk, name=item.name or "", created_at=item.created_at or "")
