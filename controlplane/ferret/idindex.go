package ferret

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB's SQLite backend uses itself
)

// The `_id` index FerretDB v1's SQLite backend never uses.
//
// FerretDB v1.24 pushes a filter on `_id` down to SQLite as `WHERE _ferretdb_sjson->'$._id' = ?`
// (internal/backends/sqlite/metadata.IDColumn, used by Query, UpdateAll and DeleteAll), but
// creates the collection's `_id_` index on the expression `_ferretdb_sjson->"_id"`. SQLite uses an
// expression index only for the identical expression (https://sqlite.org/expridx.html, "the
// expression in the WHERE clause must be the same as in the index"), so every point read, update
// and delete by `_id` scans the table and parses every row's JSON: measured, a 50-message history
// page in a tenant of 100,000 messages took 37 s instead of 38 ms.
//
// IDIndexer repairs this from outside FerretDB: it adds to every collection table a unique index
// on the exact pushed-down expression. FerretDB does not list the index (its index list is its own
// metadata), the values are the same as those of its own unique `_id_` index (so no insert is
// refused that was accepted before), and a dropped collection or database takes the index with
// its table or file.

// IDIndexName returns the name of the pushed-down `_id` index of a collection table.
func IDIndexName(table string) string { return table + idIndexSuffix }

const idIndexSuffix = "__atende_id"

// IDIndexInterval is how often the indexer looks for new collection tables (500 ms): a
// collection created in between is only slow, never wrong, until its index exists.
const IDIndexInterval = 500 * time.Millisecond

// IDIndexer keeps the pushed-down `_id` index on every collection table of every database file
// in one FerretDB data directory. Create it with NewIDIndexer; it is safe for one goroutine (Run).
type IDIndexer struct {
	dir string
	log *slog.Logger
	mu  sync.Mutex
	dbs map[string]*indexedFile
}

// indexedFile is one open database file, identified by its inode: a database dropped and created
// again under the same name is a new file.
type indexedFile struct {
	db  *sql.DB
	ino uint64
}

// NewIDIndexer returns an indexer for the SQLite files of FerretDB's data directory dir.
func NewIDIndexer(dir string, log *slog.Logger) *IDIndexer {
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	return &IDIndexer{dir: dir, log: log, dbs: map[string]*indexedFile{}}
}

// Run indexes every IDIndexInterval until ctx ends, then closes its database handles.
func (x *IDIndexer) Run(ctx context.Context) {
	t := time.NewTicker(IDIndexInterval)
	defer t.Stop()
	defer x.Close()
	for {
		if _, err := x.Once(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("ferret: _id index pass", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once makes one pass: every collection table of every `*.sqlite` file gets the index. It returns
// how many indexes it created, and the first error met (the pass goes on with the other files).
func (x *IDIndexer) Once(ctx context.Context) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	created := 0
	var first error
	for _, path := range files {
		seen[path] = true
		n, err := x.indexFile(ctx, path)
		created += n
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
	}
	for path, f := range x.dbs {
		if !seen[path] {
			f.db.Close()
			delete(x.dbs, path)
		}
	}
	return created, first
}

// indexFile brings one database file up to date.
func (x *IDIndexer) indexFile(ctx context.Context, path string) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, nil // dropped meanwhile
	}
	f := x.dbs[path]
	if f != nil && f.ino != st.Ino {
		f.db.Close()
		f = nil
	}
	if f == nil {
		// mode=rw: never create a file FerretDB has just removed. The busy timeout matches
		// FerretDB's own (10 s): an index build waits for its writers and they wait for it.
		db, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=busy_timeout(10000)")
		if err != nil {
			return 0, err
		}
		db.SetMaxOpenConns(1)
		f = &indexedFile{db: db, ino: st.Ino}
		x.dbs[path] = f
	}
	// sqlite_master, not a cache: a collection dropped and created again may get the same table
	// name, and its new table has no index.
	rows, err := f.db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c WHERE NOT EXISTS
		(SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || '`+idIndexSuffix+`')`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0, nil // FerretDB is still creating the file's metadata
		}
		return 0, err
	}
	var missing []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			rows.Close()
			return 0, err
		}
		missing = append(missing, table)
	}
	rows.Close()
	created := 0
	for _, table := range missing {
		q := fmt.Sprintf(`CREATE UNIQUE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, IDIndexName(table), table)
		if _, err := f.db.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // the collection was dropped between the two statements
			}
			return created, err
		}
		created++
	}
	return created, nil
}

// Close closes the indexer's database handles.
func (x *IDIndexer) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for path, f := range x.dbs {
		f.db.Close()
		delete(x.dbs, path)
	}
}
