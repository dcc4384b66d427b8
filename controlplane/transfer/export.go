package transfer

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"atende/cell"
	"atende/cell/auth"
	"atende/controlplane"
)

// exportable reports whether a tenant in state st has a database to export: every state from
// the first start of its cell until its teardown begins.
func exportable(st controlplane.State) bool {
	switch st {
	case controlplane.StateLive, controlplane.StateSuspendRequested, controlplane.StateSuspended,
		controlplane.StateResumeRequested, controlplane.StateResumeFailed, controlplane.StateDeletionPending:
		return true
	}
	return false
}

// Export is a prepared export: the tenant's documents are read (into a temporary file) and its
// objects listed, so the header's counts are known before anything is sent. Write sends it;
// Close releases it. An Export is used by one goroutine.
type Export struct {
	svc     *Service
	tenant  *controlplane.Tenant
	actor   string
	header  Header
	spool   *os.File
	objects []objectInfo
	once    sync.Once
}

// objectInfo is one listed object: its full key and size.
type objectInfo struct {
	key  string
	size int64
}

// PrepareExport reads the tenant's documents and lists its objects on behalf of actor (the
// super-admin's token subject). Errors: not_found (no such tenant), conflict (the tenant has no
// database to export in its state). The caller must Close the Export.
func (s *Service) PrepareExport(ctx context.Context, idOrKey, actor string) (*Export, error) {
	t, err := s.opts.Tenants.Tenant(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	if !exportable(t.State) {
		return nil, controlplane.Errorf(controlplane.EConflict, "tenant %s is %s: only a tenant with data (live, suspended or pending deletion) can be exported", t.Key, t.State)
	}
	spool, err := s.tempFile("export-*.jsonl")
	if err != nil {
		return nil, err
	}
	e := &Export{svc: s, tenant: t, actor: actor, spool: spool, header: Header{
		Format: Format, Version: Version, ExportedAt: time.Now().UTC().Truncate(time.Second),
		Tenant: TenantInfo{ID: t.ID, Key: t.Key, Name: t.Name, Plan: t.Plan}, Counts: map[string]int64{},
	}}
	if err := e.snapshot(ctx); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.listObjects(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Header returns the export's header.
func (e *Export) Header() Header { return e.header }

// Filename is a file name for the export: "<key>-<UTC time>.atende.jsonl.gz".
func (e *Export) Filename() string {
	return fmt.Sprintf("%s-%s.atende.jsonl.gz", e.tenant.Key, e.header.ExportedAt.Format("20060102T150405Z"))
}

// Close removes the temporary file; it is safe to call more than once.
func (e *Export) Close() {
	e.once.Do(func() { removeFile(e.spool) })
}

// chatCut is what the snapshot keeps of each chat: the seqs after which messages and notes are
// left out (the end of their runs from 1).
type chatCut struct {
	messages, notes int64
}

// snapshot writes the document lines to the spool file in the order of Collections: chats first,
// so every message, note, attachment and claim kept belongs to a chat in the file, and each
// chat's messages and notes are cut at the end of their gapless runs from seq 1.
func (e *Export) snapshot(ctx context.Context) error {
	db := e.svc.client.Database(controlplane.DatabaseName(e.tenant.ID))
	w := bufio.NewWriterSize(e.spool, 256<<10)
	chats := map[string]*chatCut{}
	for _, c := range Collections {
		var keep func(bson.Raw) bool
		switch c {
		case colChats:
			keep = func(d bson.Raw) bool {
				chats[str(d, "_id")] = &chatCut{}
				return true
			}
		case colMessages, colNotes:
			if err := e.cutRuns(ctx, db.Collection(c), chats, c == colNotes); err != nil {
				return err
			}
			notes := c == colNotes
			keep = func(d bson.Raw) bool {
				cut, ok := chats[str(d, "chatId")]
				if !ok {
					return false
				}
				seq, _ := d.Lookup("seq").AsInt64OK()
				if notes {
					return seq >= 1 && seq <= cut.notes
				}
				return seq >= 1 && seq <= cut.messages
			}
		case colAttachments:
			keep = func(d bson.Raw) bool { _, ok := chats[str(d, "chatId")]; return ok }
		case colClaims:
			keep = func(d bson.Raw) bool { return keepClaim(d, chats) }
		}
		n, err := e.dump(ctx, w, db.Collection(c), keep)
		if err != nil {
			return err
		}
		e.header.Counts[c] = n
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("transfer: spool: %w", err)
	}
	_, err := e.spool.Seek(0, io.SeekStart)
	return err
}

// cutRuns sets, for every chat, the end of its run of message (or note) seqs from 1: the largest
// n such that seqs 1..n all exist.
func (e *Export) cutRuns(ctx context.Context, c *mongo.Collection, chats map[string]*chatCut, notes bool) error {
	seqs := map[string]map[int64]bool{}
	err := e.each(ctx, c, func(d bson.Raw) error {
		chat := str(d, "chatId")
		if _, ok := chats[chat]; !ok {
			return nil
		}
		seq, _ := d.Lookup("seq").AsInt64OK()
		if seqs[chat] == nil {
			seqs[chat] = map[int64]bool{}
		}
		seqs[chat][seq] = true
		return nil
	})
	if err != nil {
		return err
	}
	for chat, set := range seqs {
		var n int64
		for set[n+1] {
			n++
		}
		if notes {
			chats[chat].notes = n
		} else {
			chats[chat].messages = n
		}
	}
	return nil
}

// keepClaim reports whether a claim is exported: not a single-use token mark, and, when it
// belongs to a chat (an assignment round, a CSAT rating or a capacity slot held for a chat),
// only when that chat is in the file.
func keepClaim(d bson.Raw, chats map[string]*chatCut) bool {
	id := str(d, "_id")
	for _, p := range ephemeralClaims {
		if strings.HasPrefix(id, p) {
			return false
		}
	}
	var chat string
	switch {
	case strings.HasPrefix(id, "assign:"):
		rest := strings.TrimPrefix(id, "assign:")
		if i := strings.LastIndexByte(rest, ':'); i > 0 {
			chat = rest[:i]
		}
	case strings.HasPrefix(id, "csat:"):
		chat = strings.TrimPrefix(id, "csat:")
	case strings.HasPrefix(id, "slot:"):
		chat = str(d, "holder")
	default:
		return true
	}
	_, ok := chats[chat]
	return ok
}

// each calls fn with every document of c that carries the tenant's id (the store's scoping rule:
// every query starts with tenantId).
func (e *Export) each(ctx context.Context, c *mongo.Collection, fn func(bson.Raw) error) error {
	cur, err := c.Find(ctx, bson.D{{Key: "tenantId", Value: e.tenant.ID}})
	if err != nil {
		return fmt.Errorf("transfer: read %s: %w", c.Name(), err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if err := fn(cur.Current); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("transfer: read %s: %w", c.Name(), err)
	}
	return nil
}

// dump writes a document line for every document of c that keep accepts (nil keeps all) and
// returns how many it wrote.
func (e *Export) dump(ctx context.Context, w *bufio.Writer, c *mongo.Collection, keep func(bson.Raw) bool) (int64, error) {
	var n int64
	name, _ := json.Marshal(c.Name())
	err := e.each(ctx, c, func(d bson.Raw) error {
		if keep != nil && !keep(d) {
			return nil
		}
		doc, err := bson.MarshalExtJSON(d, true, false)
		if err != nil {
			return fmt.Errorf("transfer: encode a %s document: %w", c.Name(), err)
		}
		w.WriteString(`{"collection":`)
		w.Write(name)
		w.WriteString(`,"doc":`)
		w.Write(doc)
		if _, err := w.WriteString("}\n"); err != nil {
			return fmt.Errorf("transfer: spool: %w", err)
		}
		n++
		return nil
	})
	return n, err
}

// listObjects lists the objects under the tenant's prefix.
func (e *Export) listObjects(ctx context.Context) error {
	prefix := controlplane.S3Prefix(e.tenant.ID)
	pages := s3.NewListObjectsV2Paginator(e.svc.opts.S3, &s3.ListObjectsV2Input{Bucket: aws.String(e.svc.opts.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("transfer: list objects under %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			size := aws.ToInt64(o.Size)
			e.objects = append(e.objects, objectInfo{key: aws.ToString(o.Key), size: size})
			e.header.Objects.Count++
			e.header.Objects.Bytes += size
		}
	}
	return nil
}

// Write sends the export to w: the header, the documents, the objects and the trailer, gzip'd.
// It records the export in the tenant's control-plane events and audit log, whether it succeeded
// or not. An error means w got an incomplete file (without trailer); the caller must not present
// it as complete (the API breaks the connection).
func (e *Export) Write(ctx context.Context, w io.Writer) (written int64, err error) {
	cw := &countingWriter{w: w}
	defer func() {
		written = cw.n
		e.audit(ctx, err)
	}()
	gz, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	head, err := json.Marshal(e.header)
	if err != nil {
		return 0, err
	}
	if _, err := gz.Write(append(head, '\n')); err != nil {
		return 0, err
	}
	if _, err := io.Copy(gz, e.spool); err != nil {
		return 0, err
	}
	for _, o := range e.objects {
		if err := e.writeObject(ctx, gz, o); err != nil {
			return 0, err
		}
	}
	if _, err := gz.Write([]byte(`{"end":true}` + "\n")); err != nil {
		return 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, err
	}
	return 0, nil
}

// writeObject writes the part lines of one object.
func (e *Export) writeObject(ctx context.Context, w io.Writer, o objectInfo) error {
	out, err := e.svc.opts.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.svc.opts.Bucket), Key: aws.String(o.key)})
	if err != nil {
		return fmt.Errorf("transfer: read object %s: %w", o.key, err)
	}
	defer out.Body.Close()
	if size := aws.ToInt64(out.ContentLength); size != o.size {
		return fmt.Errorf("transfer: object %s changed during the export (%d bytes, listed %d)", o.key, size, o.size)
	}
	rel := strings.TrimPrefix(o.key, controlplane.S3Prefix(e.tenant.ID))
	sum := sha256.New()
	buf := make([]byte, ChunkSize)
	var offset int64
	for {
		n, rerr := io.ReadFull(out.Body, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return fmt.Errorf("transfer: read object %s: %w", o.key, rerr)
		}
		sum.Write(buf[:n])
		part := objectPart{Object: rel, Offset: offset, Data: buf[:n]}
		if offset == 0 {
			size := o.size
			part.Size, part.ContentType, part.Metadata = &size, aws.ToString(out.ContentType), out.Metadata
		}
		offset += int64(n)
		last := offset >= o.size
		if last {
			part.SHA256 = hex.EncodeToString(sum.Sum(nil))
		}
		data, err := json.Marshal(part)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(data, '\n')); err != nil {
			return err
		}
		if last {
			if offset != o.size {
				return fmt.Errorf("transfer: object %s changed during the export", o.key)
			}
			return nil
		}
		if n == 0 {
			return fmt.Errorf("transfer: object %s ended at %d of %d bytes", o.key, offset, o.size)
		}
	}
}

// audit records the export (or its failure) in the control-plane events and the tenant's audit
// log.
func (e *Export) audit(ctx context.Context, err error) {
	outcome, reason := cell.OutcomeOK, fmt.Sprintf("exported by super-admin %s: %s", e.actor, e.header.Summary())
	if err != nil {
		outcome, reason = cell.OutcomeFailed, fmt.Sprintf("export by super-admin %s failed: %s", e.actor, controlplane.ErrorMessage(err))
		if controlplane.ErrorCode(err) == controlplane.EInternal {
			reason = fmt.Sprintf("export by super-admin %s failed: %v", e.actor, shortError(err))
		}
		e.svc.log.Warn("export failed", "tenantId", e.tenant.ID, "err", err.Error())
	} else {
		e.svc.log.Info("tenant exported", "tenantId", e.tenant.ID, "actor", e.actor, "documents", e.header.Documents(), "objects", e.header.Objects.Count)
	}
	e.svc.record(ctx, e.tenant.ID, reason)
	e.svc.auditEntry(ctx, e.tenant.ID, e.actor, "tenant.export", outcome, e.header.Summary())
}

// shortError returns the last part of a wrapped error's text, at most 200 characters.
func shortError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// auditEntry appends an entry to the tenant's own audit log (GET /api/audit on its cell), so its
// tenant-admins see who exported or imported their data. A failure is logged.
func (s *Service) auditEntry(ctx context.Context, tenantID, actor, action, outcome, detail string) {
	entry := cell.AuditEntry{
		ID: auth.RandomID(), TenantID: tenantID, At: time.Now().UTC(),
		Actor:  cell.Author{Role: cell.RoleSuperAdmin, ID: actor, Name: actor},
		Action: action, Outcome: outcome, Detail: detail,
	}
	_, err := s.client.Database(controlplane.DatabaseName(tenantID)).Collection(colAudit).InsertOne(context.WithoutCancel(ctx), entry)
	if err != nil {
		s.log.Error("audit entry not written", "tenantId", tenantID, "action", action, "err", err.Error())
	}
}

// Export prepares and writes the tenant's export to w in one call (see PrepareExport and
// Export.Write).
func (s *Service) Export(ctx context.Context, idOrKey, actor string, w io.Writer) (Header, error) {
	e, err := s.PrepareExport(ctx, idOrKey, actor)
	if err != nil {
		return Header{}, err
	}
	defer e.Close()
	_, err = e.Write(ctx, w)
	return e.header, err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

// Write writes p to the underlying writer and counts what was written.
func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// str returns the string value of key in d, or "".
func str(d bson.Raw, key string) string {
	s, _ := d.Lookup(key).StringValueOK()
	return s
}
