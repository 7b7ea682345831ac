"""Admin lists for tables that grow to millions of rows: no full COUNT(*) per page, big columns
left in the database, records read-only. Shared by receiving's and relaying's admins."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections, router
from django.http import Http404, HttpRequest
from django.utils.functional import cached_property


class HistoryAdminMixin:
    """Records, such as the event history: read-only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def object_or_404(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The admin's own lookup, which takes a malformed id for a missing object: 404, not 500."""
    found = model_admin.get_object(request, object_id)
    if found is None:
        raise Http404(f"No {model_admin.opts.verbose_name} with this id.")
    return found


def planner_estimate(queryset) -> int | None:
    """PostgreSQL's own row estimate for a query: costs a plan, not a scan."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to `exact_up_to` rows, then uses the planner's estimate.

    A bounded count reads at most that many index entries, so a page never costs a scan of
    the whole table; the list then says "about N".
    """

    exact_up_to = 10_000
    is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by().values("pk")[: self.exact_up_to + 1].count()
        if bounded <= self.exact_up_to:
            return bounded
        estimate = planner_estimate(queryset)
        if estimate is None:
            return queryset.count()
        self.is_estimate = True
        return max(estimate, bounded)


def distinct_values(model, column: str, limit: int) -> list[str]:
    """The distinct values of an indexed column by a skip-scan: one index probe per value.

    A plain DISTINCT reads every row; with a few dozen event types over a million events
    this reads a few dozen index entries instead.
    """
    connection = connections[router.db_for_read(model)]
    table = connection.ops.quote_name(model._meta.db_table)
    name = connection.ops.quote_name(column)
    # Only quoted identifiers of the model are interpolated; the limit is a parameter.
    sql = (
        f"WITH RECURSIVE found(value) AS ("  # noqa: S608
        f" SELECT MIN({name}) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({name}) FROM {table} WHERE {name} > found.value)"
        f" FROM found WHERE found.value IS NOT NULL"
        f") SELECT value FROM found WHERE value IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


class LightChangeList(ChangeList):
    """The list never shows the bodies: leave the big columns in the database."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*self.model_admin.list_deferred)


class ScaledListMixin:
    """List settings for tables that grow to millions of rows."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return LightChangeList
