"""The state folder: the article index, the ledger and the audience, SQLite files shared by all workers.

Nothing outside this package opens a connection or a lock file of the store: the index is read
through :meth:`IndexStore.read` and written through :meth:`IndexStore.apply` (and the bulk load),
the ledger through :class:`Ledger`'s methods. Layout, after reader's ``_storage``:

* :mod:`.sqlite`: opening files safely, transactions, lock files, what a failure means;
* :mod:`.schema`: the tables and the format version derived from them and the parsing code;
* :mod:`.rows`: records into rows and back, by column name, checked on the way back;
* :mod:`.queries`: the read side (feed-order walks with LIMIT, counts);
* :mod:`.writes`: the write side (bulk load, one file's change with its derived rows);
* :mod:`.index`: the index file, its connections and locks; :mod:`.ledger`: the ledger;
* :mod:`.audience`: subscriber counts per feed, source and day (``audience.sqlite``).
"""

from .audience import AudienceStore
from .index import Applied, IndexStore, config_key, index_name, predecessor, remove_superseded
from .ledger import Ledger, decide
from .queries import After, PageKey, PageRow, Reader, Slugs, Trace
from .schema import TAG, TOPIC
from .sqlite import StoreError, Unusable, Unwritable

__all__ = [
    "After",
    "Applied",
    "AudienceStore",
    "IndexStore",
    "Ledger",
    "PageKey",
    "PageRow",
    "Reader",
    "Slugs",
    "TAG",
    "TOPIC",
    "Trace",
    "StoreError",
    "Unusable",
    "Unwritable",
    "config_key",
    "decide",
    "index_name",
    "predecessor",
    "remove_superseded",
]
