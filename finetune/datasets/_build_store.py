"""Where a build reads and writes, so that it never holds up the capture writer.

On PostgreSQL a build is one transaction: nobody sees its rows before it commits, and it takes
no lock that capture inserts wait for.

SQLite has one write lock per database, and the capture writer takes it for every batch. A
build that wrote its examples in one transaction held that lock for as long as the build ran,
and captures waited behind it (or, past the busy timeout, spooled). So on SQLite a build reads
and writes in short transactions, one or two per batch, and writes the dataset's row last, in
the transaction that finishes the build: the row is what makes a dataset visible, so a dataset
still appears whole or not at all. Its examples go in before that row exists, on a connection
of the build's own that does not check the foreign key to it. A build that fails deletes what
it wrote, a batch at a time; one that dies leaves rows no dataset points at, which nothing
reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Connection, Engine
from sqlmodel import Session

from storage import Dataset, discard_dataset_examples, insert_dataset, session_scope


class BuildStore:
    """A build's sessions: ``reading()`` for reads of captures, edits and feedback (a short
    transaction of its own); ``writing()`` for the build's own rows, from one thread at a
    time."""

    pipelined = False
    """Whether a build's writes go through a thread of their own, beside its reading."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def reading(self) -> AbstractContextManager[Session]:
        return session_scope(self._engine)

    def writing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def begin(self, dataset: Dataset) -> None:
        """Before the first example is written."""

    def finish(self, dataset: Dataset) -> None:
        """Write the dataset's row with its counts: the build is done."""
        raise NotImplementedError


class _OneTransaction(BuildStore):
    pipelined = True

    def __init__(self, engine: Engine, session: Session) -> None:
        super().__init__(engine)
        self._session = session

    def writing(self) -> AbstractContextManager[Session]:
        return nullcontext(self._session)

    def begin(self, dataset: Dataset) -> None:
        # The examples' foreign key wants the row first; the transaction hides it until the end.
        insert_dataset(dataset, session=self._session)

    def finish(self, dataset: Dataset) -> None:
        self._session.add(dataset)
        self._session.flush()


class _ShortTransactions(BuildStore):
    def __init__(self, engine: Engine, connection: Connection) -> None:
        super().__init__(engine)
        self._connection = connection
        self.dataset_id: str | None = None

    def writing(self) -> AbstractContextManager[Session]:
        # Each unit begins and ends its own transaction on the build's connection.
        return session_scope(self._connection)

    def begin(self, dataset: Dataset) -> None:
        self.dataset_id = dataset.id

    def finish(self, dataset: Dataset) -> None:
        with self.writing() as session:
            insert_dataset(dataset, session=session)

    def discard(self) -> None:
        """Delete the examples written so far, in short transactions."""
        if self.dataset_id is None:
            return
        deleted = 1
        while deleted:
            with self.writing() as session:
                deleted = discard_dataset_examples(self.dataset_id, session=session)


@contextmanager
def build_store(engine: Engine) -> Iterator[BuildStore]:
    """The store a build of ``engine``'s database works through; what it wrote is undone when
    the build raises."""
    if engine.dialect.name != "sqlite":
        with session_scope(engine) as session:
            yield _OneTransaction(engine, session)
        return
    with engine.connect() as connection:
        # Outside any transaction, where SQLite takes this setting; put back before the
        # connection returns to the pool.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        store = _ShortTransactions(engine, connection)
        try:
            yield store
        except BaseException:
            connection.rollback()
            store.discard()
            raise
        finally:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
