package web_test

// The cross-tenant attack matrix (issue 4, "The attack suite"). Two real cells, A ("acme") and
// B ("globex"), each with its own tenant id, database, S3 prefix and signing key, are populated
// through the API. The HTTP matrix is generated from A's router (GetRoutes) and the WebSocket
// matrix from the frame switch of handleFrame (read from ws.go's syntax tree), so a new endpoint
// or frame type that the tables below do not cover fails the test by name. Every attack must be
// refused with an allowed status and must write nothing: both tenants' databases (every document
// of every collection but the audit log) and S3 prefixes are compared before and after.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/mongodb"
	"atende/cell/service"
	"atende/cell/web"
	"atende/controlplane/versity"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/fasthttp/websocket"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// mxRoles are the attacker roles, weakest first.
var mxRoles = []string{cell.RoleVisitor, cell.RoleAgent, cell.RoleTenantAdmin}

// mxCell is a running cell plus what the matrix needs beyond testCell: its *web.Server (for the
// route list), its store (ForeignReads), the Host it serves and the objects created in it.
type mxCell struct {
	*testCell
	name  string // "A" or "B"
	srv   *web.Server
	store *mongodb.Store
	host  string // e.g. "acme.localhost:8080"
	objs  mxObjects
}

// startMxCell starts a cell with startCell and names it for the matrix.
func startMxCell(t *testing.T, name string, mutate func(*cell.Config)) *mxCell {
	t.Helper()
	tc := startCell(t, mutate)
	u, err := url.Parse(tc.cfg.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	return &mxCell{testCell: tc, name: name, srv: tc.srv, store: tc.store, host: u.Host}
}

// call sends a JSON request on the cell's own Host.
func (m *mxCell) call(method, path, token string, body, out any) int {
	m.t.Helper()
	return doReq(m.t, m.base, m.host, method, path, token, body, out)
}

// mxObjects are the real objects of one tenant, made through its API.
type mxObjects struct {
	tenantID     string
	admin, agent service.Tokens         // logged-in sessions
	visitor      service.VisitorSession // owns chat
	visitor2     service.VisitorSession // owns queued
	chat         cell.Chat              // the visitor's chat, accepted by the admin, with messages and an attachment
	queued       cell.Chat              // visitor2's chat, waiting in the queue
	attachmentID string
	department   cell.Department
	canned       cell.CannedResponse
	secrets      []mxSecret
}

// mxSecret is a value of a tenant that only some of its own people may see: seenBy holds the
// classes "staff", "visitor" (the chat's visitor) and "visitor2". Another tenant sees none.
type mxSecret struct {
	value  string
	seenBy []string
}

// token is the bearer credential of role.
func (o *mxObjects) token(role string) string {
	switch role {
	case cell.RoleVisitor:
		return o.visitor.VisitorToken
	case cell.RoleAgent:
		return o.agent.AccessToken
	default:
		return o.admin.AccessToken
	}
}

// refresh is what role can put in a refresh request (visitors have no refresh token: their token).
func (o *mxObjects) refresh(role string) string {
	switch role {
	case cell.RoleVisitor:
		return o.visitor.VisitorToken
	case cell.RoleAgent:
		return o.agent.RefreshToken
	default:
		return o.admin.RefreshToken
	}
}

// mxPNG is a small valid PNG.
var mxPNG = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 500)...)

// populate makes the tenant's objects through the API: an admin session, an agent created by the
// admin and logged in, a visitor with a chat accepted by the admin (messages from both sides and
// an uploaded attachment), and a second visitor whose chat waits in the queue.
func (m *mxCell) populate() {
	t := m.t
	t.Helper()
	key := m.cfg.TenantKey
	secret := func(what string) string { return key + "-secret-" + what + "-" + auth.RandomID()[:8] }
	o := &m.objs
	o.tenantID = m.cfg.TenantID
	must := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: populate %s: status %d, want %d", m.name, what, got, want)
		}
	}
	must("admin login", m.call("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "admin-password-1"}, &o.admin), 200)
	agentEmail, agentPassword := "agent@"+key+".test", "agent-password-"+key
	var created service.AgentCreated
	must("create agent", m.call("POST", "/api/agents", o.admin.AccessToken, map[string]string{"email": agentEmail, "name": "Agent " + key, "password": agentPassword}, &created), 201)
	must("agent login", m.call("POST", "/api/auth/login", "", map[string]string{"email": agentEmail, "password": agentPassword}, &o.agent), 200)

	first, reply, third := secret("first"), secret("reply"), secret("queued")
	must("visitor session", m.call("POST", "/api/visitor/session", "", map[string]string{"name": "Vera " + key}, &o.visitor), 201)
	must("open chat", m.call("POST", "/api/chats", o.visitor.VisitorToken, map[string]string{"message": first, "clientMsgId": "v-1"}, &o.chat), 201)
	must("accept", m.call("POST", "/api/chat/"+o.chat.ID+"/accept", o.admin.AccessToken, nil, &o.chat), 200)
	must("admin reply", m.call("POST", "/api/messages", o.admin.AccessToken, map[string]string{"chatId": o.chat.ID, "body": reply, "clientMsgId": "a-1"}, nil), 201)
	filename := secret("file") + ".png"
	var up service.Upload
	must("announce attachment", m.call("POST", "/api/attachments", o.visitor.VisitorToken, map[string]any{"chatId": o.chat.ID, "filename": filename, "contentType": "image/png", "size": len(mxPNG)}, &up), 201)
	req, _ := http.NewRequest("PUT", up.UploadURL, bytes.NewReader(mxPNG))
	for k, v := range up.UploadHeaders {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "image/png")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	must("presigned PUT", resp.StatusCode, 200)
	o.attachmentID = up.AttachmentID
	must("attachment message", m.call("POST", "/api/messages", o.visitor.VisitorToken, map[string]string{"chatId": o.chat.ID, "clientMsgId": "v-2", "attachmentId": up.AttachmentID}, nil), 201)

	must("visitor2 session", m.call("POST", "/api/visitor/session", "", map[string]string{"name": "Walt " + key}, &o.visitor2), 201)
	must("open queued chat", m.call("POST", "/api/chats", o.visitor2.VisitorToken, map[string]string{"message": third, "clientMsgId": "w-1"}, &o.queued), 201)

	deptName, cannedBody := secret("department"), secret("canned")
	must("create department", m.call("POST", "/api/departments", o.admin.AccessToken, map[string]string{"name": deptName}, &o.department), 201)
	must("create canned response", m.call("POST", "/api/canned", o.admin.AccessToken, map[string]string{"shortcut": "greet", "body": cannedBody}, &o.canned), 201)
	must("note", m.call("POST", "/api/messages", o.admin.AccessToken, map[string]any{"chatId": o.chat.ID, "body": secret("note"), "clientMsgId": "n-1", "private": true}, nil), 201)

	staff := []string{"staff"}
	v1 := []string{"staff", "visitor"}
	v2 := []string{"staff", "visitor2"}
	o.secrets = []mxSecret{
		{o.tenantID, []string{"staff", "visitor", "visitor2"}},
		{o.agent.User.ID, staff}, {agentEmail, staff},
		{o.admin.User.ID, v1}, // the chat shows its agent
		{o.chat.ID, v1}, {o.visitor.VisitorID, v1}, {first, v1}, {reply, v1}, {o.attachmentID, v1}, {filename, v1},
		{o.queued.ID, v2}, {o.visitor2.VisitorID, v2}, {third, v2},
		{o.department.ID, staff}, {deptName, staff}, {cannedBody, staff},
	}
}

// mxLeaks returns the secrets found in resp that class may not see, ignoring those the request
// itself carried (an error may echo what the attacker sent). class "" is another tenant.
func mxLeaks(resp []byte, sent string, secrets []mxSecret, class string) []string {
	var leaks []string
	for _, s := range secrets {
		if (class != "" && slices.Contains(s.seenBy, class)) || strings.Contains(sent, s.value) {
			continue
		}
		if bytes.Contains(resp, []byte(s.value)) {
			leaks = append(leaks, s.value)
		}
	}
	return leaks
}

// classOf is the secret class of an attacker of tenant A with role (visitor2 for the peer case).
func classOf(role string) string {
	if role == cell.RoleVisitor {
		return "visitor"
	}
	return "staff"
}

// mxCred is how a route takes its credential.
type mxCred int

const (
	mxBearer      mxCred = iota // Authorization: Bearer
	mxRefreshBody               // {"refreshToken": …}
	mxWSToken                   // a WebSocket handshake with ?token=
)

// mxRoute says how to attack one route.
type mxRoute struct {
	roles  []string // the roles the route serves; the role-escalation case tries the others
	cred   mxCred
	idless bool   // the request names no object, only the caller's own tenant
	target string // the victim object the request names (for the logged table)
	// build returns the path and body aimed at victim v's objects.
	build func(v *mxObjects) (path string, body any)
	// escalation is the allowed answer to a role outside roles (default 403).
	escalation []int
	// own, for an id-less route, is why the foreign-ids case does not apply to a role the route
	// serves (the request would act legitimately on the attacker's own account).
	own string
	// victimCred: in the foreign-ids case the credential itself is the victim's object (refresh).
	victimCred bool
	// peer is the in-tenant attack of a role the route serves: what it may still not do.
	peer map[string]mxPeer
	// echoes: the answer may repeat what earlier attacks sent (the audit log records refused
	// requests with their paths), so the leak check ignores everything sent so far.
	echoes bool
}

// mxPeer is an in-tenant attack: A's visitor2 on the visitor's chat, A's agent on a chat
// assigned to the admin.
type mxPeer struct {
	build func(v *mxObjects) (string, any) // nil: the route's build
	want  []int
}

func fixed(path string, body any) func(*mxObjects) (string, any) {
	return func(*mxObjects) (string, any) { return path, body }
}

// mxRouteTable is every authenticated (or token-taking) route of a cell, keyed "METHOD path" as
// Fiber lists it. A route the router serves that is neither here nor in mxPublicRoutes fails the
// test.
func mxRouteTable() map[string]mxRoute {
	all := mxRoles
	staff := []string{cell.RoleAgent, cell.RoleTenantAdmin}
	admin := []string{cell.RoleTenantAdmin}
	visitorOnly := []string{cell.RoleVisitor}
	chatPeer := map[string]mxPeer{cell.RoleVisitor: {want: []int{404}}}
	// An agent does not see a chat assigned to someone else (issue 3: departments and
	// assignment scope what an agent sees), so its id answers 404 like a foreign one.
	writePeer := map[string]mxPeer{cell.RoleVisitor: {want: []int{404}}, cell.RoleAgent: {want: []int{404}}}
	return map[string]mxRoute{
		"POST /api/auth/refresh": {roles: staff, cred: mxRefreshBody, idless: true, target: "refresh token", victimCred: true,
			build: fixed("/api/auth/refresh", nil), escalation: []int{401}},
		"POST /api/auth/logout": {roles: all, idless: true, target: "-", build: fixed("/api/auth/logout", nil),
			own: "would end the attacker's own session; names no object"},
		"GET /api/auth/me":    {roles: staff, idless: true, target: "-", build: fixed("/api/auth/me", nil)},
		"POST /api/ws-ticket": {roles: all, idless: true, target: "-", build: fixed("/api/ws-ticket", nil)},
		// {} without a message: a visitor who has an open chat gets it back and nothing is written.
		"POST /api/chats": {roles: visitorOnly, idless: true, target: "-", build: fixed("/api/chats", map[string]any{})},
		"GET /api/chats":  {roles: staff, idless: true, target: "-", build: fixed("/api/chats?status=active", nil)},
		"GET /api/chats/:id": {roles: all, target: "active chat", peer: chatPeer,
			build: func(v *mxObjects) (string, any) { return "/api/chats/" + v.chat.ID, nil }},
		"GET /api/chats/:id/messages": {roles: all, target: "active chat", peer: chatPeer,
			build: func(v *mxObjects) (string, any) {
				return "/api/chats/" + v.chat.ID + "/messages?since=0&limit=100", nil
			}},
		"GET /api/chat/queue": {roles: staff, idless: true, target: "-", build: fixed("/api/chat/queue", nil)},
		"POST /api/chat/:id/accept": {roles: staff, target: "queued chat",
			build: func(v *mxObjects) (string, any) { return "/api/chat/" + v.queued.ID + "/accept", nil },
			peer: map[string]mxPeer{cell.RoleAgent: {want: []int{409},
				build: func(v *mxObjects) (string, any) { return "/api/chat/" + v.chat.ID + "/accept", nil }}}},
		"POST /api/chat/:id/resolve": {roles: all, target: "active chat", peer: writePeer,
			build: func(v *mxObjects) (string, any) { return "/api/chat/" + v.chat.ID + "/resolve", nil }},
		"POST /api/messages": {roles: all, target: "active chat (body chatId)", peer: writePeer,
			build: func(v *mxObjects) (string, any) {
				return "/api/messages", map[string]string{"chatId": v.chat.ID, "body": "intrusion", "clientMsgId": "intrusion-1"}
			}},
		"POST /api/attachments": {roles: all, target: "active chat (body chatId)", peer: writePeer,
			build: func(v *mxObjects) (string, any) {
				return "/api/attachments", map[string]any{"chatId": v.chat.ID, "filename": "intrusion.png", "contentType": "image/png", "size": 100}
			}},
		"GET /api/attachments/:id": {roles: all, target: "attachment", peer: chatPeer,
			build: func(v *mxObjects) (string, any) { return "/api/attachments/" + v.attachmentID, nil }},
		"GET /api/agents": {roles: admin, idless: true, target: "-", build: fixed("/api/agents", nil)},
		"GET /api/audit":  {roles: admin, idless: true, target: "-", build: fixed("/api/audit", nil), echoes: true},
		"POST /api/agents": {roles: admin, idless: true, target: "-",
			build: fixed("/api/agents", map[string]any{"email": "intruder@evil.test", "password": "intruder-pass-1", "roles": []string{cell.RoleTenantAdmin, cell.RoleAgent}}),
			own:   "creates a user in the attacker's own tenant (legitimate); names no object"},
		"DELETE /api/agents/:id": {roles: admin, target: "admin user",
			build: func(v *mxObjects) (string, any) { return "/api/agents/" + v.admin.User.ID, nil }},
		"PATCH /api/agents/:id": {roles: admin, target: "admin user",
			build: func(v *mxObjects) (string, any) {
				return "/api/agents/" + v.admin.User.ID, map[string]any{"disabled": true}
			}},
		"POST /api/auth/password": {roles: staff, idless: true, target: "-",
			build: fixed("/api/auth/password", map[string]string{"currentPassword": "a-wrong-guess", "newPassword": "intruder-new-1"}),
			own:   "changes the attacker's own password (a wrong guess here); names no object"},
		"POST /api/chat/:id/transfer": {roles: staff, target: "active chat", peer: map[string]mxPeer{cell.RoleAgent: {want: []int{404}}},
			build: func(v *mxObjects) (string, any) {
				return "/api/chat/" + v.chat.ID + "/transfer", map[string]string{"departmentId": v.department.ID, "note": "intrusion"}
			}},
		"PUT /api/chats/:id/labels": {roles: staff, target: "active chat", peer: map[string]mxPeer{cell.RoleAgent: {want: []int{404}}},
			build: func(v *mxObjects) (string, any) {
				return "/api/chats/" + v.chat.ID + "/labels", map[string]any{"labels": []string{"intrusion"}}
			}},
		"POST /api/chats/:id/read": {roles: all, target: "active chat", peer: map[string]mxPeer{cell.RoleVisitor: {want: []int{404}}, cell.RoleAgent: {want: []int{404}}},
			build: func(v *mxObjects) (string, any) { return "/api/chats/" + v.chat.ID + "/read", map[string]int{"seq": 1} }},
		"POST /api/chats/:id/csat": {roles: visitorOnly, target: "active chat", peer: chatPeer,
			build: func(v *mxObjects) (string, any) {
				return "/api/chats/" + v.chat.ID + "/csat", map[string]any{"score": 1, "comment": "intrusion"}
			}},
		"GET /api/chats/:id/transcript": {roles: all, target: "active chat", peer: map[string]mxPeer{cell.RoleVisitor: {want: []int{404}}, cell.RoleAgent: {want: []int{404}}},
			build: func(v *mxObjects) (string, any) { return "/api/chats/" + v.chat.ID + "/transcript", nil }},
		"GET /api/chats/:id/notes": {roles: staff, target: "active chat's notes", peer: map[string]mxPeer{cell.RoleAgent: {want: []int{404}}},
			build: func(v *mxObjects) (string, any) { return "/api/chats/" + v.chat.ID + "/notes", nil }},
		"GET /api/chats/:id/queue-position": {roles: all, target: "queued chat",
			peer: map[string]mxPeer{cell.RoleVisitor: {want: []int{404}, build: func(v *mxObjects) (string, any) {
				return "/api/chats/" + v.chat.ID + "/queue-position", nil
			}}},
			build: func(v *mxObjects) (string, any) { return "/api/chats/" + v.queued.ID + "/queue-position", nil }},
		"POST /api/offline-messages": {roles: visitorOnly, idless: true, target: "-",
			build: fixed("/api/offline-messages", map[string]string{"name": "Intruder", "email": "intruder@evil.test", "message": "intrusion"}),
			own:   "leaves a message in the attacker's own tenant (legitimate); names no object"},
		"GET /api/offline-messages": {roles: staff, idless: true, target: "-", build: fixed("/api/offline-messages", nil)},
		"GET /api/settings":         {roles: admin, idless: true, target: "-", build: fixed("/api/settings", nil)},
		"PUT /api/settings": {roles: admin, idless: true, target: "-", build: fixed("/api/settings", map[string]any{"routing": "auto"}),
			own: "changes the attacker's own tenant's settings (legitimate); names no object"},
		"GET /api/departments": {roles: staff, idless: true, target: "-", build: fixed("/api/departments", nil)},
		"POST /api/departments": {roles: admin, idless: true, target: "-", build: fixed("/api/departments", map[string]string{"name": "Intrusion"}),
			own: "creates a department in the attacker's own tenant (legitimate); names no object"},
		"DELETE /api/departments/:id": {roles: admin, target: "department",
			build: func(v *mxObjects) (string, any) { return "/api/departments/" + v.department.ID, nil }},
		"GET /api/canned": {roles: staff, idless: true, target: "-", build: fixed("/api/canned", nil)},
		"POST /api/canned": {roles: admin, idless: true, target: "-", build: fixed("/api/canned", map[string]string{"shortcut": "intrusion", "body": "intrusion"}),
			own: "creates a canned response in the attacker's own tenant (legitimate); names no object"},
		"DELETE /api/canned/:id": {roles: admin, target: "canned response",
			build: func(v *mxObjects) (string, any) { return "/api/canned/" + v.canned.ID, nil }},
		"GET /api/reports/summary":     {roles: admin, idless: true, target: "-", build: fixed("/api/reports/summary", nil)},
		"GET /api/webhooks/deliveries": {roles: admin, idless: true, target: "-", build: fixed("/api/webhooks/deliveries", nil)},
		"GET /ws": {roles: all, cred: mxWSToken, idless: true, target: "-", build: fixed("/ws", nil),
			own: "opens the attacker's own socket; its frames are the WebSocket matrix"},
	}
}

// mxPublicRoute is a route served without a token, and why.
type mxPublicRoute struct {
	why        string
	beforeHost bool // registered before the Host check (probes)
	body       any
	// ownHostStatus, when set, is the answer on the tenant's own host.
	ownHostStatus int
}

func mxPublicRoutes() map[string]mxPublicRoute {
	page := "HTML/JS shell; every datum comes through the authenticated API"
	return map[string]mxPublicRoute{
		"GET /healthz": {why: "liveness probe of the orchestrator; no tenant data", beforeHost: true},
		"GET /metrics": {why: "Prometheus scrape of the cell's own counters, no tenant data; never on a tenant host (checked below)",
			beforeHost: true, ownHostStatus: 404},
		"GET /readyz":               {why: "readiness probe (database ping); no tenant data", beforeHost: true},
		"GET /":                     {why: "redirect to /console"},
		"GET /console":              {why: page},
		"GET /widget-demo":          {why: page},
		"GET /admin":                {why: page},
		"GET /widget.js":            {why: "the widget script, embedded by the tenant's website"},
		"GET /static/:file":         {why: "static assets"},
		"POST /api/auth/login":      {why: "takes credentials, not a token (another tenant's credentials: checked below)", body: map[string]string{"email": "admin@acme.test", "password": "admin-password-1"}},
		"POST /api/visitor/session": {why: "anyone may start a visitor session: the widget on the tenant's site", body: map[string]string{"name": "misrouted"}},
		"GET /api/settings/public":  {why: "the tenant's public branding, shown before login"},
		"GET /api/availability":     {why: "whether the widget offers a chat or the offline form: a yes/no and a count of online agents"},
		"GET /.well-known/jwks.json": {why: "the cell's public verification keys (JWKS); public keys only",
			ownHostStatus: 200},
	}
}

// mxRequest is one attack.
type mxRequest struct {
	target *mxCell
	host   string
	method string
	path   string
	cred   string // bearer token, refresh token or ?token=
	kind   mxCred
	body   any
	who    string // e.g. "B's agent"
}

func (r mxRequest) String() string {
	b := ""
	if r.body != nil {
		j, _ := json.Marshal(r.body)
		b = " body " + string(j)
		if r.kind == mxRefreshBody {
			b = " body {\"refreshToken\": <" + r.who + " refresh token>}"
		}
	}
	cred := "Authorization: Bearer <" + r.who + " token>"
	switch {
	case r.kind == mxBearer && r.cred == "":
		cred = "no Authorization"
	case r.kind == mxRefreshBody:
		cred = "no Authorization"
	case r.kind == mxWSToken:
		cred = "WebSocket handshake ?token=<" + r.who + " token>"
	}
	return fmt.Sprintf("%s %s to cell %s, Host %s, %s%s", r.method, r.path, r.target.name, r.host, cred, b)
}

// sentText is everything the attacker put in the request (for mxLeaks).
func (r mxRequest) sentText() string {
	j, _ := json.Marshal(r.body)
	return r.path + " " + string(j)
}

var mxClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// send performs r and returns the status and body (101 for an accepted WebSocket handshake).
func (r mxRequest) send(t *testing.T) (int, []byte) {
	t.Helper()
	if r.kind == mxWSToken {
		u := strings.Replace(r.target.base, "http", "ws", 1) + r.path + "?token=" + url.QueryEscape(r.cred)
		conn, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Host": {r.host}})
		if err == nil {
			conn.Close()
			return 101, nil
		}
		if resp == nil {
			t.Fatalf("%s: %v", r, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, data
	}
	body := r.body
	if r.kind == mxRefreshBody {
		body = map[string]string{"refreshToken": r.cred}
	}
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(r.method, r.target.base+r.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = r.host
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.kind == mxBearer && r.cred != "" {
		req.Header.Set("Authorization", "Bearer "+r.cred)
	}
	resp, err := mxClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// mxMatches reports whether path (query ignored) is an instance of Fiber pattern.
func mxMatches(pattern, path string) bool {
	path, _, _ = strings.Cut(path, "?")
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], ":") && ps[i] != xs[i] || xs[i] == "" && ps[i] != "" {
			return false
		}
	}
	return true
}

// mxOutcome is one cell of the matrix: a request and what may answer it, or why it does not apply.
type mxOutcome struct {
	req     mxRequest
	want    []int
	secrets []mxSecret // what the answer may not contain
	class   string     // the attacker's class for secrets ("" = another tenant)
	na      string
}

// mxCase is one attack shape, applied to every route and role.
type mxCase struct {
	name, what string
	plan       func(key string, rt mxRoute, role string) mxOutcome
}

func mxCases(a, b *mxCell) []mxCase {
	method := func(key string) string { m, _, _ := strings.Cut(key, " "); return m }
	cred := func(rt mxRoute, o *mxObjects, role string) string {
		if rt.cred == mxRefreshBody {
			return o.refresh(role)
		}
		return o.token(role)
	}
	build := func(key string, rt mxRoute, target *mxCell, host, who, credential string, path string, body any) mxRequest {
		return mxRequest{target: target, host: host, method: method(key), path: path, cred: credential, kind: rt.cred, body: body, who: who}
	}
	return []mxCase{
		{"foreign-token", "B's token on A's host with A's ids → 401", func(key string, rt mxRoute, role string) mxOutcome {
			p, body := rt.build(&a.objs)
			return mxOutcome{req: build(key, rt, a, a.host, "B's "+role, cred(rt, &b.objs, role), p, body), want: []int{401}, secrets: a.objs.secrets}
		}},
		{"foreign-ids", "B's token on B's host with A's ids → 403/404", func(key string, rt mxRoute, role string) mxOutcome {
			p, body := rt.build(&a.objs)
			credential, who := cred(rt, &b.objs, role), "B's "+role
			if rt.victimCred {
				credential, who = cred(rt, &a.objs, role), "A's "+role
			}
			o := mxOutcome{req: build(key, rt, b, b.host, who, credential, p, body), want: []int{403, 404}, secrets: a.objs.secrets}
			switch {
			case rt.victimCred:
				o.want = []int{401}
			case rt.idless && !slices.Contains(rt.roles, role):
				o.want = []int{403}
			case rt.idless && rt.own != "":
				return mxOutcome{na: rt.own}
			case rt.idless: // the attacker's own data: must carry nothing of A
				o.want = []int{200}
			}
			return o
		}},
		{"misrouted-host", "A's token sent to A with B's Host → 421", func(key string, rt mxRoute, role string) mxOutcome {
			p, body := rt.build(&a.objs)
			return mxOutcome{req: build(key, rt, a, b.host, "A's "+role, cred(rt, &a.objs, role), p, body), want: []int{421}, secrets: a.objs.secrets, class: classOf(role)}
		}},
		{"token-at-other-cell", "A's token on B's host with B's ids → 401", func(key string, rt mxRoute, role string) mxOutcome {
			p, body := rt.build(&b.objs)
			return mxOutcome{req: build(key, rt, b, b.host, "A's "+role, cred(rt, &a.objs, role), p, body), want: []int{401}, secrets: b.objs.secrets}
		}},
		{"role-escalation", "A's token on A's route its role may not use → 403", func(key string, rt mxRoute, role string) mxOutcome {
			if slices.Contains(rt.roles, role) {
				return mxOutcome{na: "the role may use this route"}
			}
			p, body := rt.build(&a.objs)
			want := rt.escalation
			if want == nil {
				want = []int{403}
			}
			return mxOutcome{req: build(key, rt, a, a.host, "A's "+role, cred(rt, &a.objs, role), p, body), want: want, secrets: a.objs.secrets, class: classOf(role)}
		}},
		{"peer-object", "A's visitor2 on the visitor's chat, A's agent on the admin's chat → 403/404/409", func(key string, rt mxRoute, role string) mxOutcome {
			pe, ok := rt.peer[role]
			if !ok {
				return mxOutcome{na: "no object of this route is another's for this role"}
			}
			bld := rt.build
			if pe.build != nil {
				bld = pe.build
			}
			p, body := bld(&a.objs)
			credential, who, class := cred(rt, &a.objs, role), "A's "+role, classOf(role)
			if role == cell.RoleVisitor {
				credential, who, class = a.objs.visitor2.VisitorToken, "A's visitor2", "visitor2"
			}
			return mxOutcome{req: build(key, rt, a, a.host, who, credential, p, body), want: pe.want, secrets: a.objs.secrets, class: class}
		}},
	}
}

// mxState is everything of a tenant an attack could change: every document of every collection
// (except mxUnsnapshotted) and every object under its S3 prefix.
type mxState map[string]string

// mxUnsnapshotted are collections an attack may legitimately write to, and why.
var mxUnsnapshotted = map[string]string{
	"audit": "denied cross-tenant attempts are supposed to be recorded there (issue 4)",
}

func mxSnapshot(t *testing.T, db *mongo.Client, s3c *s3.Client, m *mxCell) mxState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := mxState{}
	d := db.Database(m.cfg.Database)
	names, err := d.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if mxUnsnapshotted[name] != "" {
			continue
		}
		cur, err := d.Collection(name).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for cur.Next(ctx) {
			st[name+"/"+cur.Current.Lookup("_id").String()] = cur.Current.String()
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		cur.Close(ctx)
	}
	p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: aws.String(s3Bucket), Prefix: aws.String(m.cfg.S3Prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			st["s3/"+aws.ToString(o.Key)] = fmt.Sprint(aws.ToInt64(o.Size), " ", aws.ToString(o.ETag))
		}
	}
	return st
}

// summary counts entries per collection.
func (s mxState) summary() string {
	n := map[string]int{}
	for k := range s {
		c, _, _ := strings.Cut(k, "/")
		n[c]++
	}
	var parts []string
	for c, k := range n {
		parts = append(parts, fmt.Sprintf("%s=%d", c, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func (s mxState) count(collection string) int {
	n := 0
	for k := range s {
		if strings.HasPrefix(k, collection+"/") {
			n++
		}
	}
	return n
}

func mxDiff(before, after mxState) []string {
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	short := func(s string) string {
		if s == "" {
			return "(absent)"
		}
		if len(s) > 400 {
			return s[:400] + "…"
		}
		return s
	}
	var out []string
	for _, k := range sorted {
		if before[k] != after[k] {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, short(before[k]), short(after[k])))
		}
	}
	return out
}

// mxView is the tenant as its admin sees it through the API: the queue, the chats of every status
// with their lastSeq and message count, the agents.
func mxView(m *mxCell) string {
	tok := m.objs.admin.AccessToken
	var b strings.Builder
	var q struct{ Chats []cell.Chat }
	m.call("GET", "/api/chat/queue", tok, nil, &q)
	fmt.Fprint(&b, "queue:")
	for _, c := range q.Chats {
		fmt.Fprint(&b, " ", c.ID)
	}
	for _, st := range []string{"queued", "active", "resolved"} {
		var l struct{ Chats []cell.Chat }
		m.call("GET", "/api/chats?status="+st, tok, nil, &l)
		for _, c := range l.Chats {
			var h service.History
			m.call("GET", "/api/chats/"+c.ID+"/messages?limit=500", tok, nil, &h)
			fmt.Fprintf(&b, "\nchat %s %s agent=%s lastSeq=%d messages=%d", c.ID, c.Status, c.AgentID, c.LastSeq, len(h.Messages))
		}
	}
	var ag struct{ Agents []cell.User }
	m.call("GET", "/api/agents", tok, nil, &ag)
	for _, u := range ag.Agents {
		fmt.Fprintf(&b, "\nuser %s %s %v disabled=%v", u.ID, u.Email, u.Roles, u.Disabled)
	}
	return b.String()
}

// mxFrameTypesFromSource returns the client frame types handleFrame's switch accepts, read from
// the package's source, so a new frame type cannot be missed by the WebSocket matrix.
func mxFrameTypesFromSource(t *testing.T) []string {
	t.Helper()
	// Not relative to the working directory: versitygw (TestMain) changes it.
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the package source")
	}
	files, err := filepath.Glob(filepath.Join(filepath.Dir(self), "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var types []string
	found := false
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "handleFrame" || fd.Body == nil {
				continue
			}
			found = true
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				sw, ok := n.(*ast.SwitchStmt)
				if !ok {
					return true
				}
				if sel, ok := sw.Tag.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Type" {
					return true
				}
				for _, st := range sw.Body.List {
					for _, e := range st.(*ast.CaseClause).List {
						lit, ok := e.(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							t.Fatalf("handleFrame: case %s is not a string literal; the frame matrix cannot list it", fset.Position(e.Pos()))
						}
						s, _ := strconv.Unquote(lit.Value)
						types = append(types, s)
					}
				}
				return true
			})
		}
	}
	if !found || len(types) == 0 {
		t.Fatal("handleFrame's switch on the frame type was not found in the package source: the WebSocket matrix cannot be generated")
	}
	sort.Strings(types)
	return types
}

// mxFrame says how to attack with one client frame type.
type mxFrame struct {
	chatless bool // answers "pong", names no chat
	build    func(chatID, ref string) map[string]any
	// agentPeer is the error code A's agent gets for a chat assigned to the admin; "" when staff
	// may do it by design.
	agentPeer string
	// own, when set, is why the frame is not attacked: it names no object and acts only on the
	// sender's own connection.
	own string
}

func mxFrameTable() map[string]mxFrame {
	f := func(typ string, extra map[string]any) func(string, string) map[string]any {
		return func(chatID, ref string) map[string]any {
			m := map[string]any{"type": typ, "ref": ref, "chatId": chatID}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
	}
	return map[string]mxFrame{
		"ping": {chatless: true, build: func(_, ref string) map[string]any { return map[string]any{"type": "ping", "ref": ref} }},
		// An agent sees only the chats assigned to them and the queued chats of their
		// departments, so every chat frame on the admin's chat answers not_found.
		"join-chat":    {build: f("join-chat", nil), agentPeer: cell.ENotFound},
		"resume":       {build: f("resume", map[string]any{"since": 0}), agentPeer: cell.ENotFound},
		"send-message": {build: f("send-message", map[string]any{"body": "intrusion", "clientMsgId": "intrusion-ws"}), agentPeer: cell.ENotFound},
		"typing":       {build: f("typing", map[string]any{"state": "on"}), agentPeer: cell.ENotFound},
		"read":         {build: f("read", map[string]any{"seq": 1}), agentPeer: cell.ENotFound},
		"presence": {own: "sets the sender's own presence (staff only); names no chat",
			build: func(_, ref string) map[string]any {
				return map[string]any{"type": "presence", "ref": ref, "state": "away"}
			}},
	}
}

// ticket asks m for a WebSocket ticket with token.
func (m *mxCell) ticket(token string) string {
	m.t.Helper()
	var tk service.Ticket
	if st := m.call("POST", "/api/ws-ticket", token, nil, &tk); st != 200 {
		m.t.Fatalf("%s: ws-ticket: %d", m.name, st)
	}
	return tk.Ticket
}

// mxDial opens a socket to m with Host host and ?ticket=; it returns the status of a refused one.
func mxDial(t *testing.T, m *mxCell, host, ticket string) (*websocket.Conn, int) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(m.base, "http", "ws", 1)+"/ws?ticket="+url.QueryEscape(ticket), http.Header{"Host": {host}})
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, 101
}

// mxRoundTrip sends frame and reads until the frame answering its ref; it returns that frame and
// every frame read.
func mxRoundTrip(t *testing.T, c *websocket.Conn, frame map[string]any) (map[string]any, [][]byte) {
	t.Helper()
	if err := c.WriteJSON(frame); err != nil {
		t.Fatalf("writing %v: %v", frame, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var all [][]byte
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the answer to %v: %v", frame, err)
		}
		all = append(all, data)
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f["ref"] == frame["ref"] {
			return f, all
		}
	}
}

// mxFrameAnswer sends frame and then a ping (frames of one connection are handled in order). It
// returns the frame answering frame's ref, or nil when the pong came first (the frame was taken
// without an answer: a typing or read signal that was let through), and every frame read.
func mxFrameAnswer(t *testing.T, c *websocket.Conn, frame map[string]any) (map[string]any, [][]byte) {
	t.Helper()
	sentinel := fmt.Sprint(frame["ref"], "/sentinel")
	if err := c.WriteJSON(frame); err != nil {
		t.Fatalf("writing %v: %v", frame, err)
	}
	if err := c.WriteJSON(map[string]any{"type": "ping", "ref": sentinel}); err != nil {
		t.Fatalf("writing the ping after %v: %v", frame, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var answer map[string]any
	var all [][]byte
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for the answer to %v: %v", frame, err)
		}
		all = append(all, data)
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		switch f["ref"] {
		case frame["ref"]:
			if answer == nil {
				answer = f
			}
		case sentinel:
			return answer, all
		}
	}
}

// TestCrossTenantMatrix is the cross-tenant attack matrix of issue 4.
func TestCrossTenantMatrix(t *testing.T) {
	a := startMxCell(t, "A", nil)
	b := startMxCell(t, "B", func(c *cell.Config) {
		c.TenantKey, c.TenantName = "globex", "Globex"
		c.Hosts, c.PublicURL = []string{"globex.localhost"}, "http://globex.localhost:8080"
	})
	if a.cfg.TenantID == b.cfg.TenantID || a.cfg.Database == b.cfg.Database || a.cfg.SigningKey.Equal(b.cfg.SigningKey) {
		t.Fatal("the two cells share a tenant id, database or key")
	}
	a.populate()
	b.populate()

	// Coverage: every route the router serves is in the matrix or listed as public.
	table, public := mxRouteTable(), mxPublicRoutes()
	var covered, publicKeys []string
	served := map[string]bool{}
	gets := map[string]bool{}
	routes := a.srv.App().GetRoutes(true) // true: without middleware-only (Use) entries
	for _, r := range routes {
		if r.Method == http.MethodGet {
			gets[r.Path] = true
		}
	}
	for _, r := range routes {
		if r.Method == http.MethodHead && gets[r.Path] { // Fiber's automatic HEAD of a GET
			continue
		}
		key := r.Method + " " + r.Path
		if served[key] {
			continue
		}
		served[key] = true
		if _, ok := table[key]; ok {
			covered = append(covered, key)
		} else if _, ok := public[key]; ok {
			publicKeys = append(publicKeys, key)
		} else {
			t.Errorf("route %s is not covered by the cross-tenant matrix: add it to mxRouteTable (or to mxPublicRoutes with the reason it needs no token)", key)
		}
	}
	for key := range table {
		if !served[key] {
			t.Errorf("mxRouteTable has %s, which the router no longer serves: remove it", key)
		}
	}
	for key := range public {
		if !served[key] {
			t.Errorf("mxPublicRoutes has %s, which the router no longer serves: remove it", key)
		}
	}
	sort.Strings(covered)
	sort.Strings(publicKeys)
	if t.Failed() {
		t.FailNow()
	}

	// Sockets the frame matrix attacks from (opened now: redeeming a ticket writes its claim).
	bSocks := map[string]*websocket.Conn{}
	for _, role := range mxRoles {
		conn, st := mxDial(t, b, b.host, b.ticket(b.objs.token(role)))
		if st != 101 {
			t.Fatalf("B's %s socket: %d", role, st)
		}
		bSocks[role] = conn
	}
	aVisitor2, st := mxDial(t, a, a.host, a.ticket(a.objs.visitor2.VisitorToken))
	if st != 101 {
		t.Fatalf("A's visitor2 socket: %d", st)
	}
	aAgent, st := mxDial(t, a, a.host, a.ticket(a.objs.agent.AccessToken))
	if st != 101 {
		t.Fatalf("A's agent socket: %d", st)
	}
	observer, st := mxDial(t, a, a.host, a.ticket(a.objs.admin.AccessToken))
	if st != 101 {
		t.Fatalf("A's observer socket: %d", st)
	}
	if f, _ := mxRoundTrip(t, observer, map[string]any{"type": "join-chat", "chatId": a.objs.chat.ID, "ref": "observe"}); f["type"] != "joined" {
		t.Fatalf("observer join: %v", f)
	}

	// Snapshot both tenants once the lastSeq hints are flushed.
	a.svc.FlushHints(context.Background())
	b.svc.FlushHints(context.Background())
	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Disconnect(context.Background()) })
	s3c := s3.New(s3.Options{Region: versity.Region, BaseEndpoint: aws.String(s3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s3Access, s3Secret, "")})
	before := map[*mxCell]mxState{a: mxSnapshot(t, mc, s3c, a), b: mxSnapshot(t, mc, s3c, b)}
	views := map[*mxCell]string{a: mxView(a), b: mxView(b)}
	for _, m := range []*mxCell{a, b} {
		s := before[m]
		if s.count("chats") != 2 || s.count("messages") != 4 || s.count("users") != 2 || s.count("visitors") != 2 || s.count("attachments") != 1 || s.count("s3") != 1 {
			t.Fatalf("%s's state is not what populate made: %s", m.name, s.summary())
		}
		t.Logf("%s (%s, tenant %s) before: %s", m.name, m.cfg.TenantKey, m.cfg.TenantID, s.summary())
	}
	// Nothing may be written anywhere: compared when the test ends, however it ends (a cleanup
	// runs after a t.Fatal too), while the cells still run.
	t.Cleanup(func() {
		a.svc.FlushHints(context.Background())
		b.svc.FlushHints(context.Background())
		for _, m := range []*mxCell{a, b} {
			after := mxSnapshot(t, mc, s3c, m)
			for _, d := range mxDiff(before[m], after) {
				t.Errorf("%s's state changed during the matrix: %s", m.name, d)
			}
			if v := mxView(m); v != views[m] {
				t.Errorf("%s as its admin sees it changed during the matrix:\nbefore:\n%s\nafter:\n%s", m.name, views[m], v)
			}
			if n := m.store.ForeignReads(); n != 0 {
				t.Errorf("%s's store read %d documents of another tenant", m.name, n)
			}
		}
	})

	// The HTTP matrix.
	cases := mxCases(a, b)
	requests, na := 0, 0
	grid := map[string][]string{} // route → per case, the statuses per role
	var sentSoFar strings.Builder // every path and body sent (see mxRoute.echoes)
	for _, key := range covered {
		rt := table[key]
		for _, c := range cases {
			var cellsOut []string
			for _, role := range mxRoles {
				o := c.plan(key, rt, role)
				if o.na != "" {
					na++
					cellsOut = append(cellsOut, "-")
					continue
				}
				_, pattern, _ := strings.Cut(key, " ")
				if !mxMatches(pattern, o.req.path) {
					t.Fatalf("%s: the table built path %s, which is not an instance of the route", key, o.req.path)
				}
				requests++
				sentSoFar.WriteString(o.req.sentText() + "\n")
				status, body := o.req.send(t)
				cellsOut = append(cellsOut, strconv.Itoa(status))
				if !slices.Contains(o.want, status) {
					t.Errorf("[%s] %s as %s: %s\n  → %d %s, want one of %v", c.name, key, role, o.req, status, bytes.TrimSpace(body), o.want)
					continue
				}
				if status == 404 && bytes.Contains(body, []byte(`"Cannot `)) {
					t.Errorf("[%s] %s as %s: %s\n  → 404 from the router (no route matched): the table builds a wrong request", c.name, key, role, o.req)
				}
				sent := o.req.sentText()
				if rt.echoes {
					sent = sentSoFar.String()
				}
				if leaks := mxLeaks(body, sent, o.secrets, o.class); len(leaks) > 0 {
					t.Errorf("[%s] %s as %s: %s\n  → %d with data it may not see %v: %s", c.name, key, role, o.req, status, leaks, body)
				}
			}
			grid[key] = append(grid[key], strings.Join(cellsOut, " "))
		}
	}

	// The denials were audited in the cell that refused them (the audit log is bounded to
	// deniedAuditRate writes per second, so not every one: at least one of each kind), and no
	// audit entry holds a token.
	for _, d := range []struct {
		m     *mxCell
		codes []string
	}{{a, []string{cell.EMisdirected, cell.EUnauthorized, cell.EForbidden}}, {b, []string{cell.EUnauthorized, cell.EForbidden}}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cur, err := mc.Database(d.m.cfg.Database).Collection("audit").Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for cur.Next(ctx) {
			if bytes.Contains(cur.Current, []byte("eyJ")) {
				t.Errorf("%s's audit log holds a token: %s", d.m.name, cur.Current)
			}
			var e cell.AuditEntry
			if err := cur.Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.Outcome == cell.OutcomeDenied {
				code, _, _ := strings.Cut(e.Detail, ":")
				seen[code]++
			}
		}
		cur.Close(ctx)
		cancel()
		for _, code := range d.codes {
			if seen[code] == 0 {
				t.Errorf("%s's audit log has no denied %s request after the matrix (denials audited: %v)", d.m.name, code, seen)
			}
		}
		t.Logf("%s audited denials: %v", d.m.name, seen)
	}

	// Public routes: served without a token, but still only on the tenant's hosts.
	publicChecks := 0
	for _, key := range publicKeys {
		p := public[key]
		method, pattern, _ := strings.Cut(key, " ")
		path := strings.ReplaceAll(pattern, ":file", "app.css")
		if p.ownHostStatus != 0 {
			r := mxRequest{target: a, host: a.host, method: method, path: path, body: p.body, who: "no"}
			publicChecks++
			if status, body := r.send(t); status != p.ownHostStatus {
				t.Errorf("[public own host] %s: %s → %d %.200s, want %d", key, r, status, body, p.ownHostStatus)
			}
		}
		if p.beforeHost {
			continue
		}
		r := mxRequest{target: a, host: b.host, method: method, path: path, body: p.body, who: "no"}
		publicChecks++
		if status, body := r.send(t); status != 421 {
			t.Errorf("[public misrouted] %s: %s → %d %s, want 421", key, r, status, body)
		}
	}
	// Another tenant's credentials do not log in (B's agent exists only in B).
	publicChecks++
	if st := a.call("POST", "/api/auth/login", "", map[string]string{"email": "agent@globex.test", "password": "agent-password-globex"}, nil); st != 401 {
		t.Errorf("[public] B's agent credentials at A: POST /api/auth/login on %s → %d, want 401", a.host, st)
	}

	// The WebSocket matrix, generated from handleFrame's switch.
	frameTypes := mxFrameTypesFromSource(t)
	frames := mxFrameTable()
	for _, typ := range frameTypes {
		if _, ok := frames[typ]; !ok {
			t.Errorf("frame type %q (handleFrame) is not covered by the WebSocket matrix: add it to mxFrameTable", typ)
		}
	}
	for typ := range frames {
		if !slices.Contains(frameTypes, typ) {
			t.Errorf("mxFrameTable has frame type %q, which handleFrame no longer accepts: remove it", typ)
		}
	}
	frameChecks := 0
	// Tickets: another cell's ticket does not open a socket; a misrouted one is refused first.
	for _, role := range mxRoles {
		for _, d := range []struct {
			issuer, target *mxCell
			host           string
			want           int
		}{{b, a, a.host, 401}, {a, b, b.host, 401}, {a, a, b.host, 421}} {
			frameChecks++
			if conn, st := mxDial(t, d.target, d.host, d.issuer.ticket(d.issuer.objs.token(role))); st != d.want {
				if conn != nil {
					conn.Close()
				}
				t.Errorf("[ws ticket] %s's %s ticket to cell %s with Host %s: status %d, want %d", d.issuer.name, role, d.target.name, d.host, st, d.want)
			}
		}
	}
	attack := func(label string, conn *websocket.Conn, typ, chatID string, wantCodes []string, secrets []mxSecret, class string) {
		t.Helper()
		frameChecks++
		spec := frames[typ]
		ref := fmt.Sprintf("%s-%s-%d", label, typ, frameChecks)
		frame := spec.build(chatID, ref)
		got, all := mxFrameAnswer(t, conn, frame)
		sent, _ := json.Marshal(frame)
		switch {
		case got == nil:
			t.Errorf("[ws %s] frame %s was taken without an answer, want an error %v", label, sent, wantCodes)
		case spec.chatless && got["type"] != "pong":
			t.Errorf("[ws %s] frame %s → %v, want pong", label, sent, got)
		case !spec.chatless && (got["type"] != "error" || !slices.Contains(wantCodes, fmt.Sprint(got["code"]))):
			t.Errorf("[ws %s] frame %s → %v, want an error %v", label, sent, got, wantCodes)
		}
		for _, data := range all {
			if leaks := mxLeaks(data, string(sent), secrets, class); len(leaks) > 0 {
				t.Errorf("[ws %s] frame %s: received %s with data it may not see %v", label, sent, data, leaks)
			}
		}
	}
	for _, typ := range frameTypes {
		if spec, ok := frames[typ]; !ok || spec.own != "" {
			continue
		}
		for _, role := range mxRoles {
			attack("B's "+role+" on A's chat", bSocks[role], typ, a.objs.chat.ID, []string{cell.ENotFound, cell.EForbidden}, a.objs.secrets, "")
		}
		attack("A's visitor2 on the visitor's chat", aVisitor2, typ, a.objs.chat.ID, []string{cell.ENotFound}, a.objs.secrets, "visitor2")
		if code := frames[typ].agentPeer; code != "" {
			attack("A's agent on the admin's chat", aAgent, typ, a.objs.chat.ID, []string{code}, nil, "staff")
		}
	}
	// Nothing the attackers sent reached the chat's room.
	frameChecks++
	_, observed := mxRoundTrip(t, observer, map[string]any{"type": "ping", "ref": "observer-end"})
	for _, data := range observed[:len(observed)-1] {
		t.Errorf("[ws observer] A's admin following A's chat received %s during the attacks", data)
	}

	// The table and the size.
	var names []string
	for _, c := range cases {
		names = append(names, c.name)
	}
	t.Logf("route table (statuses per role %v; - = not applicable):", mxRoles)
	t.Logf("  %-28s %-28s %s", "route", "victim object", strings.Join(names, " | "))
	for _, key := range covered {
		t.Logf("  %-28s %-28s %s", key, table[key].target, strings.Join(grid[key], " | "))
	}
	for _, key := range publicKeys {
		t.Logf("  %-28s public: %s", key, public[key].why)
	}
	for _, c := range cases {
		t.Logf("  case %-20s %s", c.name, c.what)
	}
	t.Logf("frame types (from handleFrame): %v", frameTypes)
	t.Logf("matrix: %d routes × %d roles × %d cases = %d cells → %d requests (%d cells not applicable by the table), %d frame checks, %d public-route checks",
		len(covered), len(mxRoles), len(cases), len(covered)*len(mxRoles)*len(cases), requests, na, frameChecks, publicChecks)
}
