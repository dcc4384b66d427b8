package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"atende/controlplane"
)

// Client is the typed client of the control-plane API. Methods return a *controlplane.Error for
// every error answered by the API (its code, message and request id), and a plain error when the
// API could not be reached or answered something that is not the API's.
type Client struct {
	// BaseURL is the API's base URL, e.g. "http://127.0.0.1:8081".
	BaseURL string
	// Token is the super-admin bearer token.
	Token string
	// HTTP is the HTTP client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

// ListOptions filter ListTenants.
type ListOptions struct {
	// States, when not empty, lists only tenants in these states.
	States []controlplane.State
	// All includes deleted tenants.
	All bool
}

// Health calls GET /healthz and returns nil on 200.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// CreateTenant calls POST /api/tenants.
func (c *Client) CreateTenant(ctx context.Context, req CreateTenantRequest) (*CreateTenantResponse, error) {
	out := &CreateTenantResponse{Tenant: &controlplane.Tenant{}}
	if err := c.do(ctx, http.MethodPost, "/api/tenants", req, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListTenants calls GET /api/tenants.
func (c *Client) ListTenants(ctx context.Context, opts ListOptions) ([]*controlplane.Tenant, error) {
	q := url.Values{}
	if len(opts.States) > 0 {
		states := make([]string, len(opts.States))
		for i, s := range opts.States {
			states[i] = string(s)
		}
		q.Set("state", strings.Join(states, ","))
	}
	if opts.All {
		q.Set("all", "true")
	}
	var out TenantList
	if err := c.do(ctx, http.MethodGet, "/api/tenants?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Tenants, nil
}

// GetTenant calls GET /api/tenants/{idOrKey}.
func (c *Client) GetTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return c.tenant(ctx, http.MethodGet, tenantPath(idOrKey))
}

// SuspendTenant calls POST /api/tenants/{idOrKey}/suspend.
func (c *Client) SuspendTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return c.tenant(ctx, http.MethodPost, tenantPath(idOrKey)+"/suspend")
}

// ResumeTenant calls POST /api/tenants/{idOrKey}/resume.
func (c *Client) ResumeTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return c.tenant(ctx, http.MethodPost, tenantPath(idOrKey)+"/resume")
}

// RotateKeys calls POST /api/tenants/{idOrKey}/rotate-keys. The answer carries the new
// SigningKeyID and Generation; the cell runs with the new key once Cell.Generation equals
// Generation.
func (c *Client) RotateKeys(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return c.tenant(ctx, http.MethodPost, tenantPath(idOrKey)+"/rotate-keys")
}

// DeleteTenant calls DELETE /api/tenants/{idOrKey}; now skips the grace period.
func (c *Client) DeleteTenant(ctx context.Context, idOrKey string, now bool) (*controlplane.Tenant, error) {
	p := tenantPath(idOrKey)
	if now {
		p += "?now=true"
	}
	return c.tenant(ctx, http.MethodDelete, p)
}

// TenantEvents calls GET /api/tenants/{idOrKey}/events.
func (c *Client) TenantEvents(ctx context.Context, idOrKey string) ([]controlplane.Event, error) {
	var out EventList
	if err := c.do(ctx, http.MethodGet, tenantPath(idOrKey)+"/events", nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// CellStatus calls GET /api/tenants/{idOrKey}/cell.
func (c *Client) CellStatus(ctx context.Context, idOrKey string) (*controlplane.CellStatus, error) {
	var out controlplane.CellStatus
	if err := c.do(ctx, http.MethodGet, tenantPath(idOrKey)+"/cell", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CellLogs calls GET /api/tenants/{idOrKey}/cell/logs and returns at most the last lines lines
// (0: the API's default of 100).
func (c *Client) CellLogs(ctx context.Context, idOrKey string, lines int) ([]byte, error) {
	p := tenantPath(idOrKey) + "/cell/logs"
	if lines > 0 {
		p += "?lines=" + strconv.Itoa(lines)
	}
	var out []byte
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func tenantPath(idOrKey string) string { return "/api/tenants/" + url.PathEscape(idOrKey) }

func (c *Client) tenant(ctx context.Context, method, path string) (*controlplane.Tenant, error) {
	var out controlplane.Tenant
	if err := c.do(ctx, method, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends one request with the token and decodes a 2xx JSON answer into out (or the raw body
// into a *[]byte), or the error body into a *controlplane.Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("api client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the control plane at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("api client: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			e := eb.Error
			return &e
		}
		return fmt.Errorf("unexpected answer from %s: HTTP %d: %.200s", c.BaseURL, resp.StatusCode, data)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("api client: decode answer: %w", err)
		}
		return nil
	}
}
