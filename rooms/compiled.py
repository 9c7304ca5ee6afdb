"""Model queries the ORM builds once and runs again with other values.

Building a query's SQL (resolving its joins, columns and ordering) cost 0.3–0.6 ms of
Python per query on the room page, more than SQLite took to answer it and about as much
as making the rows' model instances; the page made seven. A query compiled here is built
by the ORM once per process, with sentinel values where the ids go, and its
SQL run again with the next ids; its rows become model instances (with the related ones
of its `select_related`) the way Django's own iterator makes them. rooms/opening.py does
the same for the plain rows a socket reads when it opens.

Only what is given as a slot changes between runs: anything else the queryset depends on
(a setting such as the page size, a choice of filter) must be part of the name it is
compiled under.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import ModelIterable, get_related_populators  # type: ignore[attr-defined]


class CompiledModels:
    """A model queryset's SQL, compiled once, and how its rows become instances.

    `slots` names the values that change from one run to the next, each given in the
    queryset as an unlikely sentinel; every other parameter stays as compiled."""

    def __init__(self, queryset: QuerySet, **slots: int | str) -> None:
        query = queryset.query
        if (
            queryset._iterable_class is not ModelIterable
            or queryset._prefetch_related_lookups  # type: ignore[attr-defined]
            or queryset._known_related_objects  # type: ignore[attr-defined]
            or query.annotations
            or query.extra
            # Its FOR UPDATE would be run again outside the transaction it was built in.
            or query.select_for_update
        ):
            raise ValueError("only plain model querysets (select_related allowed) can be compiled")
        self.db = queryset.db
        compiler = query.get_compiler(using=self.db)
        self.sql, params = compiler.as_sql()
        names = {sentinel: name for name, sentinel in slots.items()}
        self.params = [(names.get(p) if isinstance(p, int | str) else None, p) for p in params]
        missing = set(slots) - {name for name, _ in self.params}
        if missing:
            raise ValueError(f"sentinels not found in the compiled query: {missing}")
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start : self.end]]
        self.populators = get_related_populators(klass_info, select, self.db)
        self.converters = list(compiler.get_converters([s[0] for s in select[: compiler.col_count]]).items())

    def run(self, **values: int | str) -> list[Any]:
        for value in values.values():
            # The SQL was built for one value in each slot: None (which the ORM writes as
            # IS NULL, here "= NULL", matching nothing), a list (IN) or a bool would not
            # mean what the queryset meant.
            if not isinstance(value, int | str) or isinstance(value, bool):
                raise TypeError(f"a compiled query's slot takes an id or a string, not {value!r}")
        params = [values[name] if name else p for name, p in self.params]
        connection = connections[self.db]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        model, db, init_list, start, end = self.model, self.db, self.init_list, self.start, self.end
        out = []
        for fetched in rows:
            row = fetched
            if self.converters:
                row = list(fetched)
                for position, (converters, expression) in self.converters:
                    value = row[position]
                    for converter in converters:
                        value = converter(value, expression, connection)
                    row[position] = value
            instance = model.from_db(db, init_list, row[start:end])
            for populator in self.populators:
                populator.populate(row, instance)
            out.append(instance)
        return out


_kept: dict[tuple[str, object], CompiledModels] = {}


def compiled(name: object, build: Callable[[], CompiledModels], using: str = "default") -> CompiledModels:
    """The query compiled under `name` for the database `using`, built by `build` the first
    time. Kept for the process (under ASGI each request may have a connection object of
    its own); it runs on the connection of whoever runs it."""
    query = _kept.get((using, name))
    if query is None:
        query = _kept[using, name] = build()
    return query
