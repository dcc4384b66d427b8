// Package ferret runs FerretDB v1 as an embedded MongoDB-wire-protocol server with its SQLite
// backend. It is the local-mode (and test) stand-in for a MongoDB server: every database is a
// SQLite file in one directory, and clients talk to it with the official MongoDB driver.
//
// Known gaps of FerretDB v1 that the rest of Atende designs around (measured, see DESIGN.md §5):
// conditional findOneAndUpdate/updateOne are not atomic, unique-index inserts are; $group with more
// than one accumulator is wrong; no transactions, change streams, TTL or partial indexes.
package ferret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is a running embedded FerretDB listening on a loopback TCP address.
type Server struct {
	uri     string
	cancel  context.CancelFunc
	done    chan struct{}
	indexer chan struct{} // closed when the IDIndexer has stopped
}

// Start starts FerretDB with its SQLite files under dir (created with mode 0700 if missing) and
// listening on addr ("127.0.0.1:0" picks a free port). It returns once the server accepts
// connections, or an error if the directory, the listener or the backend cannot be set up within
// 10 s. SQLite's in-memory mode is deliberately not offered: it deadlocks under concurrent use.
func Start(dir, addr string, logger *slog.Logger) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("ferret: data dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("ferret: data dir: %w", err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("ferret: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = f.Run(ctx)
	}()
	// MongoDBURI needs the listener to be bound, which Run does; poll until it is.
	uriCh := make(chan string, 1)
	go func() { uriCh <- f.MongoDBURI() }()
	select {
	case s.uri = <-uriCh:
	case <-time.After(10 * time.Second):
		cancel()
		return nil, errors.New("ferret: listener did not come up within 10s")
	}
	if err := waitDial(s.uri, 10*time.Second); err != nil {
		cancel()
		return nil, err
	}
	// FerretDB's point reads by _id never use its own index (see IDIndexer): add the one they can.
	s.indexer = make(chan struct{})
	go func() {
		defer close(s.indexer)
		NewIDIndexer(abs, logger).Run(ctx)
	}()
	return s, nil
}

// URI returns the mongodb:// connection string of the server, e.g. "mongodb://127.0.0.1:40123/".
func (s *Server) URI() string { return s.uri }

// Close stops the server and waits (at most 10 s) until its listener and backend are closed.
func (s *Server) Close() {
	s.cancel()
	deadline := time.After(10 * time.Second)
	for _, ch := range []chan struct{}{s.done, s.indexer} {
		select {
		case <-ch:
		case <-deadline:
		}
	}
}

// waitDial waits until a TCP connection to the host in uri succeeds or timeout passes.
func waitDial(uri string, timeout time.Duration) error {
	host := uri
	if len(host) > len("mongodb://") {
		host = host[len("mongodb://"):]
	}
	for i, c := range host {
		if c == '/' || c == '?' {
			host = host[:i]
			break
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferret: %s not reachable: %w", host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
