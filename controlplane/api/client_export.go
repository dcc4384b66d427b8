package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"atende/controlplane/transfer"
)

// ExportTenant calls GET /api/tenants/{idOrKey}/export and copies the export to w as it arrives,
// checking on the way that it is complete (transfer.Verify: header, counts, trailer). It returns
// the export's header and the bytes written. Whatever was written to w is only a valid export
// when err is nil. The client's HTTP timeout, if any, bounds the whole transfer: use a client
// without one for large tenants.
func (c *Client) ExportTenant(ctx context.Context, idOrKey string, w io.Writer) (transfer.Header, int64, error) {
	resp, err := c.stream(ctx, http.MethodGet, tenantPath(idOrKey)+"/export", "", nil, -1)
	if err != nil {
		return transfer.Header{}, 0, err
	}
	defer resp.Body.Close()
	pr, pw := io.Pipe()
	verified := make(chan struct{})
	var header transfer.Header
	var verr error
	go func() {
		defer close(verified)
		header, verr = transfer.Verify(pr)
		_, _ = io.Copy(io.Discard, pr) // keep the copy below flowing after an early verdict
	}()
	n, err := io.Copy(io.MultiWriter(w, pw), resp.Body)
	pw.CloseWithError(err)
	<-verified
	if err != nil {
		return header, n, fmt.Errorf("the export was cut short after %d bytes: %w", n, err)
	}
	if verr != nil {
		return header, n, fmt.Errorf("the export is not complete: %w", verr)
	}
	return header, n, nil
}

// ImportTenant calls POST /api/tenants/{idOrKey}/import with the export file read from r (size
// bytes, or -1 when unknown) and returns the import's report.
func (c *Client) ImportTenant(ctx context.Context, idOrKey string, r io.Reader, size int64) (*transfer.Report, error) {
	resp, err := c.stream(ctx, http.MethodPost, tenantPath(idOrKey)+"/import", transfer.MediaType, r, size)
	if err != nil {
		return nil, err
	}
	return decodeReport(resp)
}

// ImportLegacy calls POST /api/tenants/{idOrKey}/import with req: a migration from the
// single-tenant app's database.
func (c *Client) ImportLegacy(ctx context.Context, idOrKey string, req LegacyImportRequest) (*transfer.Report, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("api client: encode request: %w", err)
	}
	resp, err := c.stream(ctx, http.MethodPost, tenantPath(idOrKey)+"/import", "application/json", bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, err
	}
	return decodeReport(resp)
}

// decodeReport reads an import's report and closes the answer.
func decodeReport(resp *http.Response) (*transfer.Report, error) {
	defer resp.Body.Close()
	var rep transfer.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("api client: decode answer: %w", err)
	}
	return &rep, nil
}

// stream sends one request whose body (if any) is streamed from body, and returns a 2xx answer
// unread; an error answer is returned as its *controlplane.Error, like do.
func (c *Client) stream(ctx context.Context, method, path, contentType string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	if body != nil {
		req.ContentLength = size
		if size < 0 {
			req.ContentLength = -1
		}
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the control plane at %s: %w", c.BaseURL, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb errorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
		e := eb.Error
		return nil, &e
	}
	return nil, fmt.Errorf("unexpected answer from %s: HTTP %d: %.200s", c.BaseURL, resp.StatusCode, data)
}
