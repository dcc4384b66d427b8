package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"atende/traefik/traefiktest"
)

// TestComposeStack brings up the production compose stack (docker-compose.yml) with the override
// for machines without an image registry (docker-compose.local.yml: every image built FROM
// scratch here by `make images-local`), under a compose project of its own, and talks to it only
// as the world does: through Traefik's published port, and through `ctl` inside the control-plane
// container. A tenant created with ctl gets a cell container from the control plane (docker
// driver); through Traefik a visitor opens a chat and an agent logs in, accepts and replies, both
// over HTTP and WebSocket, and each side sees the other's messages; the cell records the client's
// address, not Traefik's (ATENDE_CELL_TRUSTED_PROXIES = the compose subnet); an unknown tenant gets
// the "tenant not found" page. Everything the run created (containers, networks, volumes, the
// cells the control plane created) is removed at the end.
//
// It needs the Docker engine (skipped without one), docker compose or docker-compose, and the
// Traefik binary of `make traefik-bin` (ATENDE_TRAEFIK_BIN, set by `make test`; skipped without
// it, like the other real-Traefik tests). It runs `make images-local` itself.
func TestComposeStack(t *testing.T) {
	traefikBin := traefiktest.Binary(t)
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine reachable (docker info: %v: %s): the compose test needs one", err, bytes.TrimSpace(out))
	}
	compose := composeCommand(t)
	began := time.Now()

	images := exec.Command("make", "-C", "..", "images-local", "TRAEFIK_BIN="+traefikBin)
	if out, err := images.CombinedOutput(); err != nil {
		t.Fatalf("make images-local: %v\n%s", err, out)
	}
	t.Logf("make images-local: %v", time.Since(began).Round(100*time.Millisecond))

	project := "atende-e2e-" + randomHex(t, 4)
	port := freePort(t)
	var sock syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &sock); err != nil {
		t.Skipf("no /var/run/docker.sock to mount into the control plane: %v", err)
	}
	env := append(os.Environ(),
		"ATENDE_DOMAIN=localhost",
		"ATENDE_HTTP_PORT=127.0.0.1:"+port,
		"ATENDE_PUBLIC_URL_PORT="+port,
		"ATENDE_S3_ACCESS_KEY=e2e-"+randomHex(t, 6),
		"ATENDE_S3_SECRET_KEY="+randomHex(t, 16),
		"ATENDE_S3_PUBLIC_ENDPOINT=",
		fmt.Sprintf("DOCKER_GID=%d", sock.Gid),
		"ATENDE_NETWORK="+project,
		"ATENDE_SUBNET="+freeSubnet(t),
		"ATENDE_IMAGE_TAG=dev",
		"ATENDE_LOG_LEVEL=info",
	)
	// dc runs a compose command of the project in the repository root and returns its standard
	// output; a failure's error carries its standard error.
	dc := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		full := append(append(slices.Clone(compose[1:]), "-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.local.yml"), args...)
		cmd := exec.CommandContext(ctx, compose[0], full...)
		var stderr bytes.Buffer
		cmd.Dir, cmd.Env, cmd.Stderr = "..", env, &stderr
		out, err := cmd.Output()
		if err != nil {
			err = fmt.Errorf("%s %s: %w\n%s", compose[0], strings.Join(full, " "), err, stderr.String())
		}
		return string(out), err
	}

	var tenantIDs []string
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dc(time.Minute, "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		teardownCompose(t, dc, project, tenantIDs)
	})
	upStart := time.Now()
	if out, err := dc(3*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	t.Logf("compose up -d: %v", time.Since(upStart).Round(100*time.Millisecond))

	// ctl inside the control-plane container, once its API answers.
	ctl := func(args ...string) (string, error) {
		return dc(90*time.Second, append([]string{"exec", "-T", "controlplane", "/ctl"}, args...)...)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := ctl("tenant", "list")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not answer ctl within 90s: %v\n%s", err, out)
		}
		time.Sleep(time.Second)
	}
	createStart := time.Now()
	out, err := ctl("tenant", "create", "acme", "--name", "Acme", "--admin-email", "admin@acme.test", "--json")
	if err != nil {
		t.Fatalf("ctl tenant create: %v\n%s", err, out)
	}
	var acme tenant
	if json.Unmarshal([]byte(out), &acme) != nil || acme.ID == "" {
		t.Fatalf("ctl tenant create printed %q, want its JSON", out)
	}
	tenantIDs = append(tenantIDs, acme.ID)
	if acme.State != "live" || acme.URL != "http://acme.localhost:"+port {
		t.Fatalf("created tenant %+v: want state live and URL http://acme.localhost:%s", acme, port)
	}

	// Through Traefik from here on: the stack helpers with Traefik's address as the edge. Until
	// Traefik has loaded the new route, its catch-all sends acme's host to the control plane's
	// edge router, which serves live tenants too (and, as the first trusted hop, replaces
	// X-Forwarded-For with Traefik's address), so a 200 alone does not prove Traefik routed it:
	// Traefik's access log (JSON on stdout, User-Agent kept) names the router.
	s := &stack{t: t, edge: "http://127.0.0.1:" + port, port: port}
	traefikID := serviceID(t, dc, "traefik")
	deadline = time.Now().Add(60 * time.Second)
	for {
		st, body, router := viaTraefikRouter(t, s, traefikID, "acme", "/api/settings/public")
		if st == http.StatusOK && strings.Contains(body, `"name":"Acme"`) && router == "tenant-acme@file" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme not served by Traefik's router tenant-acme 60s after ctl returned: %d through %q, %.300s", st, router, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("tenant create → first 200 through Traefik: %v", time.Since(createStart).Round(100*time.Millisecond))

	// Visitor: a session and a chat with a first message (HTTP), then a socket on the chat.
	visitorTok, c := s.visitor("acme", "Hello from the compose stack")
	visitorWS := s.dial("acme", visitorTok)
	visitorWS.send(map[string]any{"type": "join-chat", "chatId": c.ID})
	visitorWS.next("joined", 10*time.Second)

	// Agent (the tenant's admin is an agent too): a login carrying a forged X-Forwarded-For,
	// which Traefik replaces, the queue, a socket, the accept.
	agent := loginVia(t, s, "acme", acme.Admin.Email, acme.Admin.Password, "203.0.113.99")
	agentWS := s.dial("acme", agent.AccessToken)
	var queue struct {
		Chats []chat `json:"chats"`
	}
	if st, body := s.on("acme", "GET", "/api/chat/queue", agent.AccessToken, nil, &queue); st != http.StatusOK || len(queue.Chats) != 1 || queue.Chats[0].ID != c.ID {
		t.Fatalf("queue: %d %s; want the visitor's chat %s", st, body, c.ID)
	}
	if st, body := s.on("acme", "POST", "/api/chat/"+c.ID+"/accept", agent.AccessToken, nil, nil); st != http.StatusOK {
		t.Fatalf("accept: %d %s", st, body)
	}
	agentWS.send(map[string]any{"type": "join-chat", "chatId": c.ID})
	agentWS.next("joined", 10*time.Second)

	// The agent replies over the socket; the visitor answers over HTTP. Each sees the other.
	agentWS.send(map[string]any{"type": "send-message", "chatId": c.ID, "body": "Hi, how can I help?", "clientMsgId": "agent-1", "ref": "r1"})
	if f := agentWS.next("ack", 10*time.Second); f.Ref != "r1" || f.Seq != 2 {
		t.Fatalf("agent's ack: %+v, want ref r1 and seq 2", f)
	}
	if f := messageWithSeq(visitorWS, 2); f.Body != "Hi, how can I help?" {
		t.Fatalf("visitor saw %+v, want the agent's reply with seq 2", f)
	}
	if st, body := s.on("acme", "POST", "/api/messages", visitorTok, map[string]string{"chatId": c.ID, "body": "My order is late", "clientMsgId": "visitor-2"}, nil); st != http.StatusCreated {
		t.Fatalf("visitor's message: %d %s", st, body)
	}
	if f := messageWithSeq(agentWS, 3); f.Body != "My order is late" {
		t.Fatalf("agent saw %+v, want the visitor's message with seq 3", f)
	}
	for who, tok := range map[string]string{"visitor": visitorTok, "agent": agent.AccessToken} {
		var h struct {
			Messages []struct {
				Seq  int64  `json:"seq"`
				Body string `json:"body"`
			} `json:"messages"`
		}
		s.on("acme", "GET", "/api/chats/"+c.ID+"/messages?since=0", tok, nil, &h)
		var got []string
		for _, m := range h.Messages {
			got = append(got, fmt.Sprintf("%d:%s", m.Seq, m.Body))
		}
		if want := "1:Hello from the compose stack|2:Hi, how can I help?|3:My order is late"; strings.Join(got, "|") != want {
			t.Errorf("%s's history: %q, want %q", who, strings.Join(got, "|"), want)
		}
	}

	// The cell saw the client's address as Traefik received it, neither Traefik's own address (it
	// believes Traefik's X-Forwarded-For) nor the forged one (Traefik drops a client's).
	traefikIP := containerIP(t, traefikID, project)
	var audit struct {
		Entries []struct {
			Action, Outcome, IP string
		} `json:"entries"`
	}
	_, auditBody := s.on("acme", "GET", "/api/audit", agent.AccessToken, nil, &audit)
	var loginIP string
	for _, e := range audit.Entries {
		if e.Action == "auth.login" && e.Outcome == "ok" {
			loginIP = e.IP
		}
	}
	if loginIP == "" || loginIP == traefikIP || loginIP == "203.0.113.99" || net.ParseIP(loginIP) == nil {
		t.Errorf("the login's audit entry has IP %q (Traefik is %s, the forged header said 203.0.113.99); want the client's address; audit: %.2000s", loginIP, traefikIP, auditBody)
	} else {
		t.Logf("login audited from %s (Traefik at %s)", loginIP, traefikIP)
	}

	// An unknown tenant gets the platform's "tenant not found" page through Traefik.
	if st, body, router := viaTraefikRouter(t, s, traefikID, "nobody", "/"); st != http.StatusNotFound || !strings.Contains(body, "Tenant not found") || router != "catch-all@file" {
		t.Errorf("unknown tenant through Traefik: %d through %q, %.300s; want 404 with \"Tenant not found\" through catch-all@file", st, router, body)
	}
	t.Logf("compose stack test body (after images): %v", time.Since(upStart).Round(100*time.Millisecond))
}

// messageWithSeq returns the next message frame of seq on ws (a sender receives its own messages
// too), or fails the test after 10 s.
func messageWithSeq(ws *wsClient, seq int64) frame {
	ws.t.Helper()
	for {
		if f := ws.next("message", 10*time.Second); f.Seq == seq {
			return f
		}
	}
}

// composeCommand returns the compose command of this machine, ["docker", "compose"] (v2) or
// ["docker-compose"] (v1), and skips the test when there is neither.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither `docker compose` nor `docker-compose` is installed")
	return nil
}

// loginVia logs in on key's host sending X-Forwarded-For: forged, as a client behind a lying
// proxy would.
func loginVia(t *testing.T, s *stack, key, email, password, forged string) session {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequest("POST", s.edge+"/api/auth/login", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = s.host(key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", forged)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out session
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &out) != nil || out.AccessToken == "" {
		t.Fatalf("login %s on %s: %d %s", email, key, resp.StatusCode, data)
	}
	return out
}

// serviceID returns the container id of the project's service.
func serviceID(t *testing.T, dc func(time.Duration, ...string) (string, error), service string) string {
	t.Helper()
	id, err := dc(30*time.Second, "ps", "-q", service)
	if err != nil || strings.TrimSpace(id) == "" {
		t.Fatalf("compose ps -q %s: %v %s", service, err, id)
	}
	return strings.TrimSpace(id)
}

// containerIP returns the address of container id on network.
func containerIP(t *testing.T, id, network string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").IPAddress}}`, id).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect %s: %v %s", id, err, out)
	}
	return strings.TrimSpace(string(out))
}

// probes counts viaTraefikRouter's requests, each with a User-Agent of its own.
var probes int

// viaTraefikRouter sends GET path to key's host through Traefik (container traefikID) and returns
// the status, the body and the router that served it, read from Traefik's access log ("" when
// no line for the request appeared within 2 s).
func viaTraefikRouter(t *testing.T, s *stack, traefikID, key, path string) (int, string, string) {
	t.Helper()
	probes++
	ua := fmt.Sprintf("atende-e2e-compose-probe-%d", probes)
	req, err := http.NewRequest("GET", s.edge+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host, req.Header["User-Agent"] = s.host(key), []string{ua}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for range 20 { // the line is written just after the response
		logs, _ := exec.Command("docker", "logs", "--tail", "200", traefikID).Output()
		for _, line := range strings.Split(string(logs), "\n") {
			var entry struct {
				RouterName string `json:"RouterName"`
				UserAgent  string `json:"request_User-Agent"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.UserAgent == ua {
				return resp.StatusCode, string(body), entry.RouterName
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return resp.StatusCode, string(body), ""
}

// teardownCompose removes everything the project created: it stops the control plane first (so
// its supervisor restarts no cell), removes the cell containers it created — those on the
// project's network, and those of tenantIDs — with their own networks, then runs `down -v`.
func teardownCompose(t *testing.T, dc func(time.Duration, ...string) (string, error), project string, tenantIDs []string) {
	start := time.Now()
	if out, err := dc(time.Minute, "stop", "-t", "5", "controlplane"); err != nil {
		t.Logf("compose stop controlplane: %v\n%s", err, out)
	}
	ids := map[string]bool{}
	for _, id := range tenantIDs {
		ids[id] = true
	}
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=atende.managed=true", "--filter", "network="+project).Output()
	for _, c := range strings.Fields(string(out)) {
		id, _ := exec.Command("docker", "inspect", "-f", `{{index .Config.Labels "atende.tenantId"}}`, c).Output()
		if s := strings.TrimSpace(string(id)); s != "" {
			ids[s] = true
		}
	}
	for id := range ids {
		// Only containers and networks labelled as the tenant's own by the docker driver.
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=atende.managed=true", "--filter", "label=atende.tenantId="+id).Output()
		for _, c := range strings.Fields(string(out)) {
			if o, err := exec.Command("docker", "rm", "-f", c).CombinedOutput(); err != nil {
				t.Errorf("remove cell container %s: %v %s", c, err, o)
			}
		}
		out, _ = exec.Command("docker", "network", "ls", "-q", "--filter", "label=atende.managed=true", "--filter", "label=atende.tenantId="+id).Output()
		for _, n := range strings.Fields(string(out)) {
			if o, err := exec.Command("docker", "network", "rm", n).CombinedOutput(); err != nil {
				t.Errorf("remove cell network %s: %v %s", n, err, o)
			}
		}
	}
	if out, err := dc(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		t.Errorf("compose down: %v\n%s", err, out)
	}
	t.Logf("teardown: %v", time.Since(start).Round(100*time.Millisecond))
}

// freeSubnet returns a /24 in 10.213.0.0/16 that no Docker network on the engine uses.
func freeSubnet(t *testing.T) string {
	t.Helper()
	used := map[string]bool{}
	ids, _ := exec.Command("docker", "network", "ls", "-q").Output()
	for _, id := range strings.Fields(string(ids)) {
		out, _ := exec.Command("docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", id).Output()
		for _, cidr := range strings.Fields(string(out)) {
			if _, n, err := net.ParseCIDR(cidr); err == nil {
				used[n.String()] = true
			}
		}
	}
	overlaps := func(cand *net.IPNet) bool {
		for cidr := range used {
			_, n, _ := net.ParseCIDR(cidr)
			if n.Contains(cand.IP) || cand.Contains(n.IP) {
				return true
			}
		}
		return false
	}
	b := make([]byte, 1)
	for range 256 {
		_, _ = rand.Read(b)
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("10.213.%d.0/24", b[0]))
		if !overlaps(cand) {
			return cand.String()
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16 for the compose network")
	return ""
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
