package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"atende/controlplane"
	"atende/controlplane/transfer"
)

// Export and import routes (see the transfer package for the file format):
//
//	GET  /api/tenants/{idOrKey}/export   200 application/gzip, streamed; the file is complete
//	                                     only if the connection ends normally
//	POST /api/tenants/{idOrKey}/import   Content-Type application/gzip: an export file,
//	                                     streamed (any size up to the transfer service's
//	                                     limit); application/json: LegacyImportRequest, a
//	                                     migration from the single-tenant app → 200 transfer.Report

// TenantTransfer is what the export and import routes call; *transfer.Service implements it.
type TenantTransfer interface {
	// PrepareExport reads the tenant's data for an export by actor.
	PrepareExport(ctx context.Context, idOrKey, actor string) (*transfer.Export, error)
	// Import loads an export file read from r into the tenant.
	Import(ctx context.Context, idOrKey, actor string, r io.Reader) (*transfer.Report, error)
	// ImportLegacy migrates the single-tenant app's database into the tenant.
	ImportLegacy(ctx context.Context, idOrKey, actor string, src transfer.LegacySource) (*transfer.Report, error)
}

// DefaultTransferTimeout is the default of Options.TransferTimeout: how long one export or
// import request may take to read and write.
const DefaultTransferTimeout = 2 * time.Hour

// LegacyImportRequest is the JSON body of POST /api/tenants/{idOrKey}/import that migrates the
// single-tenant app's MongoDB database (README, "Migrating from the single-tenant app").
type LegacyImportRequest struct {
	// FromMongo is the mongodb:// or mongodb+srv:// URI of the legacy server, credentials
	// included if needed; the control plane connects to it, and never logs or records it.
	FromMongo string `json:"fromMongo" validate:"required,max=4096"`
	// Database is the legacy database; empty means the one in FromMongo's path.
	Database string `json:"database,omitempty" validate:"max=64"`
}

// Transfer route kinds.
const (
	routeExport = "export"
	routeImport = "import"
)

// transferRoute tells whether method and path (query included or not) name the export or the
// import route, as Fiber routes them (case-insensitive, optional trailing slash).
func transferRoute(method, path string) string {
	path, _, _ = strings.Cut(path, "?")
	parts := strings.Split(strings.Trim(strings.ToLower(path), "/"), "/")
	if len(parts) != 4 || parts[0] != "api" || parts[1] != "tenants" || parts[2] == "" {
		return ""
	}
	switch {
	case parts[3] == routeExport && (method == http.MethodGet || method == http.MethodHead):
		return routeExport
	case parts[3] == routeImport && method == http.MethodPost:
		return routeImport
	}
	return ""
}

// streamBodies lets the import route read its body as a stream of any length and gives the
// export and import routes timeout to read and write, while every other route keeps limit: it
// turns on fasthttp's request-body streaming and returns the middleware that reads the body of
// every other request into memory as before (413 too_large above limit), so their handlers see a
// plain body.
func streamBodies(app *fiber.App, limit int, timeout time.Duration) fiber.Handler {
	srv := app.Server()
	srv.StreamRequestBody = true
	srv.HeaderReceived = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		switch transferRoute(string(h.Method()), string(h.RequestURI())) {
		case routeImport:
			return fasthttp.RequestConfig{ReadTimeout: timeout, WriteTimeout: timeout}
		case routeExport:
			return fasthttp.RequestConfig{WriteTimeout: timeout}
		}
		return fasthttp.RequestConfig{}
	}
	return func(c *fiber.Ctx) error {
		req := c.Request()
		if transferRoute(c.Method(), c.Path()) == routeImport {
			body := &uploadBody{}
			if s := c.Context().RequestBodyStream(); s != nil {
				body.r = s
			} else {
				body.r = bytes.NewReader(req.Body())
			}
			c.Locals(localUpload, body)
			err := c.Next()
			if err != nil && !body.eof {
				// The handler left the upload unread: read some of it (so the client, still
				// sending, gets the answer), then close the connection rather than read the
				// rest as the next request.
				_, _ = io.CopyN(io.Discard, body, 64<<20)
				c.Context().SetConnectionClose()
			}
			return err
		}
		if !req.IsBodyStream() {
			return c.Next()
		}
		tooLarge := func() error {
			_, _ = io.CopyN(io.Discard, c.Context().RequestBodyStream(), 1<<20)
			c.Context().SetConnectionClose()
			return controlplane.Errorf(controlplane.ETooLarge, "the request body is larger than %d bytes", limit)
		}
		if req.Header.ContentLength() > limit {
			return tooLarge()
		}
		body, err := io.ReadAll(io.LimitReader(c.Context().RequestBodyStream(), int64(limit)+1))
		if err != nil {
			c.Context().SetConnectionClose()
			return controlplane.Errorf(controlplane.EInvalid, "the request body could not be read")
		}
		if len(body) > limit {
			return tooLarge()
		}
		req.SetBodyRaw(body)
		return c.Next()
	}
}

// localUpload is the Locals key of an import's *uploadBody.
const localUpload = "upload"

// uploadBody is an import request's body; it remembers reaching its end, after which fasthttp's
// chunked reader must not be read again (it would wait for the next request's bytes).
type uploadBody struct {
	r   io.Reader
	eof bool
}

// Read reads from the body, never past its end.
func (u *uploadBody) Read(p []byte) (int, error) {
	if u.eof {
		return 0, io.EOF
	}
	n, err := u.r.Read(p)
	if err == io.EOF {
		u.eof = true
	}
	return n, err
}

// actor returns the super-admin token's subject.
func actor(c *fiber.Ctx) string {
	s, _ := c.Locals("subject").(string)
	if s == "" {
		s = "unknown"
	}
	return s
}

// errNoTransfer answers the transfer routes of an API without a transfer service.
var errNoTransfer = controlplane.Errorf(controlplane.ENotFound, "export and import are not enabled on this control plane")

func (h *handlers) exportTenant(c *fiber.Ctx) error {
	if h.transfer == nil {
		return errNoTransfer
	}
	if c.Method() == http.MethodHead {
		// Fiber answers HEAD with GET routes: do not prepare an export nobody reads.
		return controlplane.Errorf(controlplane.EInvalid, "use GET to export a tenant")
	}
	ex, err := h.transfer.PrepareExport(c.UserContext(), c.Params("id"), actor(c))
	if err != nil {
		return err
	}
	// The export is written into a pipe that fasthttp sends, chunked, after this handler returns.
	// A failure closes the pipe with the error, which makes fasthttp break the connection without
	// the final chunk: the client sees an incomplete answer, never a short file that looks whole.
	pr, pw := io.Pipe()
	log, id := h.log, ex.Header().Tenant.ID
	go func() {
		defer ex.Close()
		_, err := ex.Write(context.Background(), pw)
		if err != nil {
			log.Warn("export not sent completely", "tenantId", id, attrErr, err.Error())
		}
		pw.CloseWithError(err)
	}()
	c.Set(fiber.HeaderContentType, transfer.MediaType)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+ex.Filename()+`"`)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.SendStream(pr)
}

func (h *handlers) importTenant(c *fiber.Ctx) error {
	if h.transfer == nil {
		return errNoTransfer
	}
	body, ok := c.Locals(localUpload).(*uploadBody)
	if !ok {
		return controlplane.Errorf(controlplane.EInternal, "the import's body is not available")
	}
	media, _, _ := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	var rep *transfer.Report
	var err error
	switch media {
	case fiber.MIMEApplicationJSON:
		data, rerr := io.ReadAll(io.LimitReader(body, int64(h.bodyLimit)+1))
		if rerr != nil {
			return controlplane.Errorf(controlplane.EInvalid, "the request body could not be read")
		}
		if len(data) > h.bodyLimit {
			return controlplane.Errorf(controlplane.ETooLarge, "a migration request is at most %d bytes", h.bodyLimit)
		}
		var req LegacyImportRequest
		if err := h.bindBytes(data, &req); err != nil {
			return err
		}
		rep, err = h.transfer.ImportLegacy(c.UserContext(), c.Params("id"), actor(c), transfer.LegacySource{URI: req.FromMongo, Database: req.Database})
	case transfer.MediaType, "application/x-gzip", "application/octet-stream":
		rep, err = h.transfer.Import(c.UserContext(), c.Params("id"), actor(c), body)
	default:
		return controlplane.Errorf(controlplane.EInvalid, `Content-Type must be %s (an export file) or application/json ({"fromMongo": "mongodb://…"})`, transfer.MediaType)
	}
	if err != nil {
		return err
	}
	return c.JSON(rep)
}

// bindBytes decodes data like bind decodes a body: one JSON object, no unknown fields, then
// validated.
func (h *handlers) bindBytes(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return controlplane.Errorf(controlplane.EInvalid, "the body is not valid JSON for this request: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return controlplane.Errorf(controlplane.EInvalid, "the body must hold a single JSON object")
	}
	return validationError(h.validate.Struct(v))
}
