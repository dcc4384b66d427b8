// Package transfer moves one tenant's data out of and into the platform for the super-admin API:
// Export writes a tenant's database t_<tenantId> and its objects under t/<tenantId>/ as one file,
// Import loads such a file into another (or the same, emptied) tenant, and ImportLegacy migrates
// the database of the original single-tenant app (see legacy.go). It works on the tenant's
// database and prefix directly, beside the tenant's cell, which serves what was imported within
// the 2 s of its caches.
//
// # Export format, version 1
//
// An export is a gzip stream (RFC 1952) of JSON lines (UTF-8, one JSON object per line, each
// ending with "\n"). The file holds the users' bcrypt password hashes, the webhook secret and
// every conversation: it is as secret as the database itself.
//
// Line 1 is the header:
//
//	{"format":"atende-tenant-export","version":1,
//	 "tenant":{"id":"<tenantId>","key":"acme","name":"Acme","plan":"free"},
//	 "exportedAt":"2026-01-02T03:04:05Z",
//	 "counts":{"chats":2,"visitors":2,"messages":7,...},"objects":{"count":1,"bytes":5120}}
//
// counts holds the number of document lines of every collection in Collections (0 included);
// objects the number and total size of the objects. Then come the document lines, collection by
// collection in the order of Collections:
//
//	{"collection":"users","doc":{...}}
//
// where doc is the stored document in MongoDB Extended JSON v2, canonical mode (so every BSON
// type survives: {"$date":…} for times, {"$numberLong":…} for 64-bit integers, …), tenantId
// included. Then the objects, each as one or more part lines of at most ChunkSize bytes in order:
//
//	{"object":"c/<chatId>/<random>","offset":0,"size":5120,"contentType":"image/png",
//	 "metadata":{"tenantid":"<tenantId>"},"data":"<base64>","sha256":"<hex>"}
//
// object is the key relative to the tenant's prefix t/<tenantId>/; data is standard base64 of the
// bytes from offset on. The first part (offset 0) carries size, contentType and metadata; the
// last part carries sha256, the hex SHA-256 of the whole object; an empty object is one part with
// data "". The last line is the trailer {"end":true}; a file without it is incomplete.
//
// What is carried: users (with password hashes), visitors, chats, messages, notes, attachments
// (metadata) and their objects, settings (webhook secret included), departments, canned
// responses, offline messages, the tenant's audit log, and the claims that hold state: capacity
// slots ("slot:…", held by active chats), assignment rounds ("assign:…"), CSAT ratings
// ("csat:…"), department names and canned shortcuts. Not carried: sessions and the single-use
// claims of refresh tokens and WebSocket tickets ("refresh:…", "ticket:…"), which are bound to
// the source cell's signing keys (everyone logs in again), and the webhook delivery machinery
// (webhook_*: outbox, delivery log, leases), which belongs to the source cell; the webhook
// configuration itself is in settings.
//
// A live tenant can be exported: chats are read first, then everything else, and only the
// messages and notes that continue each chat's run of seqs from 1 are kept, so the file is
// consistent (what arrives meanwhile is either wholly in it or not at all). Suspend the tenant
// first for an export of one instant.
//
// # Import
//
// Import reads the whole file to a temporary file, validates all of it (format, counts, types,
// references between documents, seqs 1..n per chat, unique ids, emails and openKeys, object
// checksums, settings rules) and only then writes; a bad file is refused with an invalid error
// and nothing is written. Every tenantId (at any depth) is rewritten to the target's id, as are
// the attachments' keys and the objects' "tenantid" metadata. The target must be live or
// suspended and hold no conversation data (chats, visitors, messages, notes, attachments,
// offline messages), departments or canned responses other than identical copies of the file's
// own documents (a conflict otherwise), so an interrupted import can be run again. Its users
// whose email (or id) is in the file are replaced by the file's; its other users, its audit log
// and sessions stay; its settings are replaced. The target keeps its own key, name and plan.
package transfer

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/controlplane"
)

// Format and Version identify the file format in the header.
const (
	Format  = "atende-tenant-export"
	Version = 1
)

// MediaType is the Content-Type of an export, in both directions.
const MediaType = "application/gzip"

// ChunkSize is the most object bytes one part line carries (1 MiB, 1.4 MB of base64).
const ChunkSize = 1 << 20

// MaxLineBytes bounds one line of a file (a document or an object part), in bytes: a MongoDB
// document is at most 16 MiB of BSON, and its Extended JSON is rarely twice that.
const MaxLineBytes = 32 << 20

// DefaultMaxImportBytes is the default of Options.MaxImportBytes: 16 GiB.
const DefaultMaxImportBytes = 16 << 30

// Collections are the collections an export carries, in file order.
var Collections = []string{
	colChats, colVisitors, colMessages, colNotes, colAttachments, colUsers, colDepartments,
	colCanned, colSettings, colOffline, colAudit, colClaims,
}

// Collection names of a cell's database (cell/mongodb).
const (
	colChats       = "chats"
	colVisitors    = "visitors"
	colMessages    = "messages"
	colNotes       = "notes"
	colAttachments = "attachments"
	colUsers       = "users"
	colDepartments = "departments"
	colCanned      = "canned"
	colSettings    = "settings"
	colOffline     = "offline_messages"
	colAudit       = "audit"
	colClaims      = "claims"
	colSessions    = "sessions"
)

// ephemeralClaims are the claim id prefixes an export leaves out: single-use marks of refresh
// tokens and WebSocket tickets signed by the source cell's keys.
var ephemeralClaims = []string{"refresh:", "ticket:"}

// TenantInfo names a tenant in a header or a report.
type TenantInfo struct {
	// ID is the tenant id.
	ID string `json:"id"`
	// Key is the tenant's subdomain slug at export (or import) time.
	Key string `json:"key"`
	// Name is the tenant's display name.
	Name string `json:"name"`
	// Plan is the tenant's plan ("free", "pro", "enterprise").
	Plan string `json:"plan,omitempty"`
}

// ObjectCount is a number of objects and their total size in bytes.
type ObjectCount struct {
	// Count is the number of objects.
	Count int64 `json:"count"`
	// Bytes is their total size in bytes.
	Bytes int64 `json:"bytes"`
}

// Header is the first line of an export (see the package documentation).
type Header struct {
	// Format is always Format.
	Format string `json:"format"`
	// Version is the format's version, Version (1).
	Version int `json:"version"`
	// Tenant is the exported tenant; its id is the tenantId of every document in the file.
	Tenant TenantInfo `json:"tenant"`
	// ExportedAt is when the export was prepared (UTC).
	ExportedAt time.Time `json:"exportedAt"`
	// Counts maps each collection of Collections to its number of document lines.
	Counts map[string]int64 `json:"counts"`
	// Objects counts the objects and their bytes.
	Objects ObjectCount `json:"objects"`
}

// Documents returns the total number of document lines the header announces.
func (h Header) Documents() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Summary describes the header's counts in one line, e.g. "3 users, 2 chats, 7 messages, …;
// 1 object (5120 bytes)". Collections without documents are left out.
func (h Header) Summary() string { return summary(h.Counts, h.Objects) }

func summary(counts map[string]int64, objects ObjectCount) string {
	var parts []string
	for _, c := range Collections {
		if n := counts[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, strings.ReplaceAll(c, "_", " ")))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no documents")
	}
	return fmt.Sprintf("%s; %d objects (%d bytes)", strings.Join(parts, ", "), objects.Count, objects.Bytes)
}

// TenantFinder resolves a tenant by id or key (controlplane.TenantService does).
type TenantFinder interface {
	// Tenant returns the tenant or a not_found *controlplane.Error.
	Tenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error)
}

// EventRecorder records an audited action in a tenant's control-plane history.
type EventRecorder interface {
	// RecordEvent appends an event with reason to the tenant's events, keeping its state.
	RecordEvent(ctx context.Context, tenantID, reason string) error
}

// Options configure a Service.
type Options struct {
	// Tenants resolves tenants by id or key. Required.
	Tenants TenantFinder
	// MongoURI is the MongoDB server holding the tenants' databases. Required.
	MongoURI string
	// S3 is the object store client. Required.
	S3 *s3.Client
	// Bucket holds the tenants' prefixes t/<tenantId>/. Required.
	Bucket string
	// Events records exports and imports in the tenants' control-plane events; nil records
	// nothing there (the tenant's own audit log still gets an entry).
	Events EventRecorder
	// TempDir holds the temporary files of exports and imports (mode 0600, removed when done);
	// empty means os.TempDir(). They hold secrets: prefer a private directory.
	TempDir string
	// MaxImportBytes bounds an import file, compressed and uncompressed; default
	// DefaultMaxImportBytes.
	MaxImportBytes int64
	// Logger receives progress and failures; default slog.Default(). Document contents are never
	// logged.
	Logger *slog.Logger
}

// Service exports and imports tenants. It is safe for concurrent use.
type Service struct {
	opts   Options
	client *mongo.Client
	log    *slog.Logger
	// importing holds the ids of the tenants an import is writing into.
	importing sync.Map
}

// New returns a Service; it connects to MongoURI lazily. Close disconnects.
func New(opts Options) (*Service, error) {
	if opts.Tenants == nil || opts.MongoURI == "" || opts.S3 == nil || opts.Bucket == "" {
		return nil, errors.New("transfer: Tenants, MongoURI, S3 and Bucket are required")
	}
	if opts.MaxImportBytes <= 0 {
		opts.MaxImportBytes = DefaultMaxImportBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(opts.MongoURI).SetTimeout(2 * time.Minute))
	if err != nil {
		return nil, fmt.Errorf("transfer: connect: %w", err)
	}
	return &Service{opts: opts, client: client, log: opts.Logger}, nil
}

// Close disconnects from MongoDB.
func (s *Service) Close(ctx context.Context) error { return s.client.Disconnect(ctx) }

// tempFile creates a private temporary file for pattern.
func (s *Service) tempFile(pattern string) (*os.File, error) {
	dir := s.opts.TempDir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("transfer: temp dir: %w", err)
		}
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("transfer: temp file: %w", err)
	}
	return f, nil
}

// removeFile closes and deletes f.
func removeFile(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// record appends an event to the tenant's control-plane history, logging a failure (the action
// itself is done by then).
func (s *Service) record(ctx context.Context, tenantID, reason string) {
	if s.opts.Events == nil {
		return
	}
	if err := s.opts.Events.RecordEvent(context.WithoutCancel(ctx), tenantID, reason); err != nil {
		s.log.Error("event not recorded", "tenantId", tenantID, "reason", reason, "err", err.Error())
	}
}

// line is one line of an export, any kind; exactly one of Collection, Object and End is set.
type line struct {
	Collection  string            `json:"collection,omitempty"`
	Doc         json.RawMessage   `json:"doc,omitempty"`
	Object      *string           `json:"object,omitempty"`
	Offset      int64             `json:"offset,omitempty"`
	Size        *int64            `json:"size,omitempty"`
	ContentType string            `json:"contentType,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Data        *[]byte           `json:"data,omitempty"`
	SHA256      string            `json:"sha256,omitempty"`
	End         bool              `json:"end,omitempty"`
}

// objectPart is the shape of an object part line as written.
type objectPart struct {
	Object      string            `json:"object"`
	Offset      int64             `json:"offset"`
	Size        *int64            `json:"size,omitempty"`
	ContentType string            `json:"contentType,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Data        []byte            `json:"data"`
	SHA256      string            `json:"sha256,omitempty"`
}

// invalid returns an invalid *controlplane.Error.
func invalid(format string, args ...any) error {
	return controlplane.Errorf(controlplane.EInvalid, format, args...)
}

// fileReader reads the lines of an export file.
type fileReader struct {
	sc   *bufio.Scanner
	gz   *gzip.Reader
	n    int // number of the last line read
	done bool
}

// limitedReader fails with a too_large error once more than n bytes were read.
type limitedReader struct {
	r io.Reader
	n int64
}

// Read reads from the underlying reader and fails once the limit is passed.
func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, controlplane.Errorf(controlplane.ETooLarge, "the import is larger than the limit of this control plane")
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, controlplane.Errorf(controlplane.ETooLarge, "the import is larger than the limit of this control plane")
	}
	return n, err
}

// newFileReader reads an export from r (gzip), at most limit uncompressed bytes.
func newFileReader(r io.Reader, limit int64) (*fileReader, error) {
	gz, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, invalid("the file is not a gzip stream (an export made by `ctl tenant export`): %v", err)
	}
	gz.Multistream(false)
	sc := bufio.NewScanner(&limitedReader{r: gz, n: limit})
	sc.Buffer(make([]byte, 0, 256<<10), MaxLineBytes)
	return &fileReader{sc: sc, gz: gz}, nil
}

// next returns the next line's bytes, io.EOF at the end, or an invalid error.
func (f *fileReader) next() ([]byte, error) {
	// A read error ends the stream with the partial line before it: Err tells them apart.
	if !f.sc.Scan() || f.sc.Err() != nil {
		err := f.sc.Err()
		switch {
		case err == nil:
			return nil, io.EOF
		case errors.Is(err, bufio.ErrTooLong):
			return nil, invalid("line %d is longer than %d bytes", f.n+1, MaxLineBytes)
		case controlplane.ErrorCode(err) == controlplane.ETooLarge:
			return nil, err
		default:
			return nil, invalid("the file is damaged after line %d (truncated or not gzip): %v", f.n, err)
		}
	}
	f.n++
	return f.sc.Bytes(), nil
}

// header reads and checks the first line.
func (f *fileReader) header() (Header, error) {
	data, err := f.next()
	if err == io.EOF {
		return Header{}, invalid("the file is empty")
	}
	if err != nil {
		return Header{}, err
	}
	var h Header
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Header{}, invalid("line 1 is not an export header: %v", err)
	}
	switch {
	case h.Format != Format:
		return Header{}, invalid("line 1: format %q is not %q", h.Format, Format)
	case h.Version != Version:
		return Header{}, invalid("line 1: version %d is not supported (this control plane reads version %d)", h.Version, Version)
	case h.Tenant.ID == "":
		return Header{}, invalid("line 1: tenant.id is required")
	case h.Counts == nil:
		return Header{}, invalid("line 1: counts is required")
	}
	for c, n := range h.Counts {
		if !known(c) {
			return Header{}, invalid("line 1: counts names an unknown collection %q", c)
		}
		if n < 0 {
			return Header{}, invalid("line 1: counts.%s is negative", c)
		}
	}
	if h.Objects.Count < 0 || h.Objects.Bytes < 0 {
		return Header{}, invalid("line 1: objects counts are negative")
	}
	return h, nil
}

// line reads the next line after the header as a line; io.EOF at the end of the stream.
func (f *fileReader) line() (line, error) {
	data, err := f.next()
	if err != nil {
		return line{}, err
	}
	var l line
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return line{}, invalid("line %d is not valid: %v", f.n, err)
	}
	if dec.More() {
		return line{}, invalid("line %d holds more than one JSON value", f.n)
	}
	kinds := 0
	for _, set := range []bool{l.Collection != "", l.Object != nil, l.End} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return line{}, invalid("line %d must be exactly one of a document, an object part or the trailer", f.n)
	}
	return l, nil
}

// known reports whether c is one of Collections.
func known(c string) bool {
	for _, k := range Collections {
		if k == c {
			return true
		}
	}
	return false
}

// Verify reads an export from r as far as it needs to know it is complete: the header, the
// number of document and object lines it announces and the trailer. It does not check the
// documents themselves (Import does). It returns the header.
func Verify(r io.Reader) (Header, error) {
	f, err := newFileReader(r, 1<<62)
	if err != nil {
		return Header{}, err
	}
	h, err := f.header()
	if err != nil {
		return Header{}, err
	}
	counts := map[string]int64{}
	var objects ObjectCount
	for {
		l, err := f.line()
		if err == io.EOF {
			return h, invalid("the file is incomplete: it ends without the trailer line")
		}
		if err != nil {
			return h, err
		}
		switch {
		case l.End:
			if _, err := f.next(); err != io.EOF {
				return h, invalid("line %d: nothing may follow the trailer", f.n)
			}
			if err := checkCounts(h, counts, objects); err != nil {
				return h, err
			}
			return h, nil
		case l.Collection != "":
			counts[l.Collection]++
		case l.Object != nil:
			if l.Offset == 0 {
				objects.Count++
			}
			if l.Data != nil {
				objects.Bytes += int64(len(*l.Data))
			}
		}
	}
}

// checkCounts compares what was read with what the header announced.
func checkCounts(h Header, counts map[string]int64, objects ObjectCount) error {
	for _, c := range Collections {
		if counts[c] != h.Counts[c] {
			return invalid("the header announces %d %s documents, the file holds %d", h.Counts[c], c, counts[c])
		}
	}
	if objects != h.Objects {
		return invalid("the header announces %d objects (%d bytes), the file holds %d (%d bytes)", h.Objects.Count, h.Objects.Bytes, objects.Count, objects.Bytes)
	}
	return nil
}
