// Package api is the control plane's super-admin HTTP API (Fiber v2) and the typed Go client
// that ctl and tests use. Every route but GET /healthz and the /_pages/* pages requires a
// super-admin bearer token signed by the control plane's Ed25519 key.
//
// Routes (JSON; times RFC 3339 UTC):
//
//	GET    /healthz                          {"status":"ok"}
//	POST   /api/tenants                      CreateTenantRequest → 202 CreateTenantResponse
//	GET    /api/tenants[?state=S&all=true]   {"tenants":[tenant...]}
//	GET    /api/tenants/{idOrKey}            tenant
//	POST   /api/tenants/{idOrKey}/suspend    202 tenant
//	POST   /api/tenants/{idOrKey}/resume     202 tenant
//	POST   /api/tenants/{idOrKey}/rotate-keys  202 tenant (new signingKid and generation; the
//	                                         cell restarts until cell.generation == generation)
//	DELETE /api/tenants/{idOrKey}[?now=true] 202 tenant (deletion-pending; torn down after the
//	                                         grace period, or at once with now=true)
//	POST   /api/tenants/{idOrKey}/cancel-delete  202 tenant (back to its state before the
//	                                         deletion; conflict once the teardown has begun)
//	GET    /api/sweep                        SweepReport: resources of unknown or deleted tenants
//	                                         (lists only; nothing is deleted)
//	GET    /api/tenants/{idOrKey}/events     {"events":[event...]}
//	GET    /api/tenants/{idOrKey}/cell       cell status
//	GET    /api/tenants/{idOrKey}/cell/logs[?lines=N]  text/plain
//	GET    /api/tenants/{idOrKey}/export     application/gzip, streamed (export.go)
//	POST   /api/tenants/{idOrKey}/import     export file or LegacyImportRequest → transfer.Report
//	PUT    /api/tenants/{idOrKey}/tenancy    TenancyRequest → 202 tenant (the cell restarts with
//	                                         it, like rotate-keys; webhooks.go)
//	GET    /api/webhooks/deliveries[?tenant=K&limit=N]  controlplane.WebhookLog: lifecycle
//	                                         webhook attempts, newest first (webhooks.go)
//	GET    /_pages/notfound, /_pages/paused  HTML pages for Traefik's fallback and paused services
//
// Errors: {"error":{"code","message","requestId"}} with the status of statusOf.
package api

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/requestid"

	"atende/controlplane"
)

// Log attribute keys.
const (
	attrRequestID = "requestId"
	attrMethod    = "method"
	attrPath      = "path"
	attrStatus    = "status"
	attrErr       = "err"
)

// DefaultBodyLimit is the largest request body accepted, in bytes.
const DefaultBodyLimit = 64 << 10

// Options configure the API.
type Options struct {
	// Service does the work. Required.
	Service controlplane.TenantService
	// TokenKey verifies super-admin tokens. Required.
	TokenKey ed25519.PublicKey
	// NotFound and Paused serve /_pages/notfound (404) and /_pages/paused (410); nil handlers
	// answer with a plain error body of that status.
	NotFound, Paused http.Handler
	// BodyLimit is the largest request body in bytes; default DefaultBodyLimit.
	BodyLimit int
	// Logger receives request and error logs; default slog.Default().
	Logger *slog.Logger
	// Transfer serves the export and import routes (export.go); nil answers them 404.
	Transfer TenantTransfer
	// TransferTimeout bounds reading and writing one export or import request; default
	// DefaultTransferTimeout.
	TransferTimeout time.Duration
	// Webhooks serves GET /api/webhooks/deliveries (webhooks.go); nil answers it 404.
	Webhooks controlplane.PlatformWebhooks
}

// New returns the Fiber app serving the API. It panics if Service or TokenKey is missing (a
// wiring mistake).
func New(opts Options) *fiber.App {
	if opts.Service == nil || len(opts.TokenKey) != ed25519.PublicKeySize {
		panic("api: Service and TokenKey are required")
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TransferTimeout <= 0 {
		opts.TransferTimeout = DefaultTransferTimeout
	}
	h := &handlers{svc: opts.Service, validate: validator.New(validator.WithRequiredStructEnabled()),
		transfer: opts.Transfer, bodyLimit: opts.BodyLimit, log: opts.Logger, webhooks: opts.Webhooks}
	app := fiber.New(fiber.Config{
		AppName: "atende-controlplane", BodyLimit: opts.BodyLimit, Immutable: true,
		DisableStartupMessage: true, ErrorHandler: errorHandler(opts.Logger),
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
	})
	app.Use(requestid.New(), accessLog(opts.Logger))
	app.Use(streamBodies(app, opts.BodyLimit, opts.TransferTimeout))
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.All("/_pages/notfound*", page(opts.NotFound, http.StatusNotFound, "tenant not found"))
	app.All("/_pages/paused*", page(opts.Paused, http.StatusGone, "this tenant is paused"))

	r := app.Group("/api", authenticate(opts.TokenKey))
	r.Post("/tenants", h.createTenant)
	r.Get("/tenants", h.listTenants)
	r.Get("/tenants/:id", h.getTenant)
	r.Delete("/tenants/:id", h.deleteTenant)
	r.Post("/tenants/:id/suspend", h.suspendTenant)
	r.Post("/tenants/:id/resume", h.resumeTenant)
	r.Post("/tenants/:id/rotate-keys", h.rotateKeys)
	r.Post("/tenants/:id/cancel-delete", h.cancelDeletion)
	r.Get("/sweep", h.sweep)
	r.Get("/tenants/:id/events", h.tenantEvents)
	r.Get("/tenants/:id/cell", h.cellStatus)
	r.Get("/tenants/:id/cell/logs", h.cellLogs)
	r.Get("/tenants/:id/export", h.exportTenant)
	r.Post("/tenants/:id/import", h.importTenant)
	r.Put("/tenants/:id/tenancy", h.setTenancy)
	r.Get("/webhooks/deliveries", h.webhookDeliveries)
	app.Use(func(c *fiber.Ctx) error {
		return controlplane.Errorf(controlplane.ENotFound, "no route %s %s", c.Method(), c.Path())
	})
	return app
}

// page serves h (or a plain error of status) on the API's own listener.
func page(h http.Handler, status int, message string) fiber.Handler {
	if h == nil {
		return func(c *fiber.Ctx) error { return fiber.NewError(status, message) }
	}
	return adaptor.HTTPHandler(h)
}

// authenticate requires a valid super-admin bearer token.
func authenticate(key ed25519.PublicKey) fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
		if !ok || strings.TrimSpace(raw) == "" {
			return controlplane.Errorf(controlplane.EUnauthorized, "a bearer token is required (Authorization: Bearer <token>)")
		}
		claims, err := verifyToken(key, strings.TrimSpace(raw))
		if err != nil {
			return err
		}
		c.Locals("subject", claims.Subject)
		return c.Next()
	}
}

// accessLog logs every request once it is answered.
func accessLog(log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		status := c.Response().StatusCode()
		if err != nil {
			status = statusOf(codeOf(err))
		}
		log.Debug("request", attrRequestID, c.GetRespHeader(fiber.HeaderXRequestID), attrMethod, c.Method(),
			attrPath, c.Path(), attrStatus, status, "ms", time.Since(start).Milliseconds())
		return err
	}
}

// statusOf is the one error-code → HTTP-status map of the API.
func statusOf(code string) int {
	switch code {
	case controlplane.EInvalid:
		return http.StatusBadRequest
	case controlplane.EUnauthorized:
		return http.StatusUnauthorized
	case controlplane.EForbidden:
		return http.StatusForbidden
	case controlplane.ENotFound:
		return http.StatusNotFound
	case controlplane.EConflict:
		return http.StatusConflict
	case controlplane.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case controlplane.EUnsupported:
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

// codeOf returns the error code of err, translating Fiber's own errors (unknown route, body too
// large, bad method...) into the domain vocabulary.
func codeOf(err error) string {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch {
		case fe.Code == http.StatusNotFound || fe.Code == http.StatusGone:
			return controlplane.ENotFound
		case fe.Code == http.StatusRequestEntityTooLarge:
			return controlplane.ETooLarge
		case fe.Code == http.StatusUnauthorized:
			return controlplane.EUnauthorized
		case fe.Code >= 400 && fe.Code < 500:
			return controlplane.EInvalid
		}
		return controlplane.EInternal
	}
	return controlplane.ErrorCode(err)
}

// errorBody is the error shape of every HTTP surface.
type errorBody struct {
	Error controlplane.Error `json:"error"`
}

// errorHandler writes every error as {"error":{code,message,requestId}}; unknown errors are 500
// and logged with the request id (their text is not shown to the caller).
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		code := codeOf(err)
		status := statusOf(code)
		msg := controlplane.ErrorMessage(err)
		var fe *fiber.Error
		if errors.As(err, &fe) {
			status, msg = fe.Code, fe.Message
		}
		rid := c.GetRespHeader(fiber.HeaderXRequestID)
		if status >= 500 {
			log.Error("request failed", attrRequestID, rid, attrMethod, c.Method(), attrPath, c.Path(), attrErr, err.Error())
			msg = "internal error"
		}
		return c.Status(status).JSON(errorBody{Error: controlplane.Error{Code: code, Message: msg, RequestID: rid}})
	}
}

// CreateTenantRequest is the body of POST /api/tenants.
type CreateTenantRequest struct {
	// Key is the subdomain slug (controlplane.ValidateKey).
	Key string `json:"key" validate:"required"`
	// Name is the display name.
	Name string `json:"name" validate:"required,max=200"`
	// AllowedOrigins are extra exact origins allowed to embed the widget (at most 50).
	AllowedOrigins []string `json:"allowedOrigins,omitempty" validate:"max=50,dive,required"`
	// Plan is "free" (default), "pro" or "enterprise".
	Plan string `json:"plan,omitempty" validate:"omitempty,oneof=free pro enterprise"`
	// Dedicated asks for a dedicated stack; the same as Tier "dedicated".
	Dedicated bool `json:"dedicated,omitempty"`
	// Tier is "shared" (default) or "dedicated" (controlplane.TierDedicated: own database server,
	// bucket and network; docker driver only, otherwise 422 unsupported). It never changes.
	Tier string `json:"tier,omitempty" validate:"omitempty,oneof=shared dedicated"`
	// AdminEmail is the first tenant-admin's email.
	AdminEmail string `json:"adminEmail" validate:"required,email,max=254"`
	// AdminPassword is that admin's password (8 to 72 bytes); generated when empty.
	AdminPassword string `json:"adminPassword,omitempty" validate:"omitempty,min=8,max=72"`
}

// CreateTenantResponse is the body of a 202 to POST /api/tenants: the tenant's fields plus the
// admin's credentials, returned only this once.
type CreateTenantResponse struct {
	*controlplane.Tenant
	Admin controlplane.Credentials `json:"admin"`
}

// TenantList is the body of GET /api/tenants.
type TenantList struct {
	Tenants []*controlplane.Tenant `json:"tenants"`
}

// EventList is the body of GET /api/tenants/{idOrKey}/events.
type EventList struct {
	Events []controlplane.Event `json:"events"`
}

type handlers struct {
	svc       controlplane.TenantService
	validate  *validator.Validate
	transfer  TenantTransfer
	bodyLimit int
	log       *slog.Logger
	webhooks  controlplane.PlatformWebhooks
}

// bind decodes the JSON body into v, refusing unknown fields and trailing data, then validates it.
func (h *handlers) bind(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return controlplane.Errorf(controlplane.EInvalid, "the body is not valid JSON for this request: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return controlplane.Errorf(controlplane.EInvalid, "the body must hold a single JSON object")
	}
	return validationError(h.validate.Struct(v))
}

// validationError turns validator errors into one invalid *controlplane.Error naming each field.
func validationError(err error) error {
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		return err
	}
	msgs := make([]string, 0, len(ves))
	for _, fe := range ves {
		field := jsonName(fe.Namespace())
		switch fe.Tag() {
		case "required":
			msgs = append(msgs, field+" is required")
		case "email":
			msgs = append(msgs, field+" must be a valid email address")
		case "oneof":
			msgs = append(msgs, fmt.Sprintf("%s must be one of: %s", field, fe.Param()))
		case "min":
			msgs = append(msgs, fmt.Sprintf("%s must be at least %s characters long", field, fe.Param()))
		case "max":
			msgs = append(msgs, fmt.Sprintf("%s must be at most %s long", field, fe.Param()))
		default:
			msgs = append(msgs, fmt.Sprintf("%s is invalid (%s)", field, fe.Tag()))
		}
	}
	return controlplane.Errorf(controlplane.EInvalid, "%s", strings.Join(msgs, "; "))
}

// jsonName turns a validator namespace like "CreateTenantRequest.AdminEmail" into "adminEmail".
func jsonName(ns string) string {
	_, field, _ := strings.Cut(ns, ".")
	if field == "" {
		field = ns
	}
	return strings.ToLower(field[:1]) + field[1:]
}

func (h *handlers) createTenant(c *fiber.Ctx) error {
	var req CreateTenantRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	created, err := h.svc.CreateTenant(c.UserContext(), controlplane.NewTenant{
		Key: req.Key, Name: req.Name, AllowedOrigins: req.AllowedOrigins, Plan: req.Plan, Dedicated: req.Dedicated, Tier: req.Tier,
		Admin: controlplane.NewUser{Email: req.AdminEmail, Password: req.AdminPassword},
	})
	if err != nil {
		return err
	}
	c.Location("/api/tenants/" + created.Tenant.ID)
	return c.Status(http.StatusAccepted).JSON(CreateTenantResponse{Tenant: created.Tenant, Admin: created.Admin})
}

func (h *handlers) listTenants(c *fiber.Ctx) error {
	f := controlplane.TenantFilter{IncludeDeleted: c.QueryBool("all")}
	if s := c.Query("state"); s != "" {
		for _, st := range strings.Split(s, ",") {
			if !controlplane.State(st).Valid() {
				return controlplane.Errorf(controlplane.EInvalid, "state %q is unknown", st)
			}
			f.States = append(f.States, controlplane.State(st))
		}
	}
	ts, err := h.svc.Tenants(c.UserContext(), f)
	if err != nil {
		return err
	}
	return c.JSON(TenantList{Tenants: ts})
}

func (h *handlers) getTenant(c *fiber.Ctx) error {
	t, err := h.svc.Tenant(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(t)
}

func (h *handlers) suspendTenant(c *fiber.Ctx) error {
	return accepted(c)(h.svc.SuspendTenant(c.UserContext(), c.Params("id")))
}

func (h *handlers) resumeTenant(c *fiber.Ctx) error {
	return accepted(c)(h.svc.ResumeTenant(c.UserContext(), c.Params("id")))
}

func (h *handlers) rotateKeys(c *fiber.Ctx) error {
	return accepted(c)(h.svc.RotateKeys(c.UserContext(), c.Params("id")))
}

func (h *handlers) deleteTenant(c *fiber.Ctx) error {
	return accepted(c)(h.svc.DeleteTenant(c.UserContext(), c.Params("id"), c.QueryBool("now")))
}

// accepted answers 202 with the tenant, or the error.
func accepted(c *fiber.Ctx) func(*controlplane.Tenant, error) error {
	return func(t *controlplane.Tenant, err error) error {
		if err != nil {
			return err
		}
		return c.Status(http.StatusAccepted).JSON(t)
	}
}

func (h *handlers) tenantEvents(c *fiber.Ctx) error {
	evs, err := h.svc.TenantEvents(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(EventList{Events: evs})
}

func (h *handlers) cellStatus(c *fiber.Ctx) error {
	st, err := h.svc.CellStatus(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(st)
}

func (h *handlers) cellLogs(c *fiber.Ctx) error {
	lines := 100
	if s := c.Query("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return controlplane.Errorf(controlplane.EInvalid, "lines must be a number from 1 to 10000")
		}
		lines = n
	}
	logs, err := h.svc.CellLogs(c.UserContext(), c.Params("id"), lines)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Send(logs)
}
