package service

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"atende/cell"
	"atende/cell/mongodb"
	"atende/cell/realtime"
)

// staleClaimAge is how old a capacity slot or assignment claim must be before the sweeper treats
// it as left behind by a crash between two writes (a live accept takes milliseconds).
const staleClaimAge = 30 * time.Second

// viewer is what decides which chats a staff member may see: their roles and departments.
type viewer struct {
	id    string
	admin bool
	depts []string
}

// viewer returns the caller's viewer; an agent's departments come from their user document
// (cached for userCacheTTL, so a department change reaches every check within that time).
func (s *Service) viewer(ctx context.Context, p cell.Principal) (viewer, error) {
	if p.HasRole(cell.RoleTenantAdmin) || p.HasRole(cell.RoleSuperAdmin) {
		return viewer{id: p.Subject, admin: true}, nil
	}
	u, err := s.cachedUser(ctx, p.Subject)
	if cell.ErrorCode(err) == cell.ENotFound {
		// A verified token without a stored user (a super-admin acting as agent, or a user
		// removed a moment ago): no departments, so only department-less queued chats and
		// chats assigned to the subject.
		return viewer{id: p.Subject}, nil
	}
	if err != nil {
		return viewer{}, err
	}
	return viewer{id: p.Subject, depts: u.Departments}, nil
}

// maySee reports whether the viewer may follow chat c now: admins all; an agent the chats
// assigned to them and the queued chats of their departments (a chat without a department is in
// everyone's).
func (v viewer) maySee(c cell.Chat) bool {
	switch {
	case v.admin:
		return true
	case c.Status == cell.ChatActive:
		return c.AgentID == v.id
	case c.Status == cell.ChatQueued:
		return c.DepartmentID == "" || contains(v.depts, c.DepartmentID)
	default:
		return false
	}
}

// tookPart reports whether the viewer was ever assigned to c (read access to closed chats).
func (v viewer) tookPart(c cell.Chat) bool {
	if c.AgentID == v.id {
		return true
	}
	for _, t := range c.History {
		if t.AgentID == v.id {
			return true
		}
	}
	return false
}

// userCacheTTL bounds how stale a cached user (departments, disabled) may be.
const userCacheTTL = 2 * time.Second

type cachedUser struct {
	u  cell.User
	at time.Time
}

// cachedUser returns the user with id, read at most userCacheTTL ago.
func (s *Service) cachedUser(ctx context.Context, id string) (cell.User, error) {
	s.usersMu.Lock()
	cu, ok := s.users[id]
	s.usersMu.Unlock()
	if ok && time.Since(cu.at) < userCacheTTL {
		return cu.u, nil
	}
	u, err := s.store.User(ctx, id)
	if err != nil {
		return cell.User{}, err
	}
	s.usersMu.Lock()
	s.users[id] = cachedUser{u: u, at: time.Now()}
	s.usersMu.Unlock()
	return u, nil
}

// forgetUser drops id from the user cache after a change made by this process.
func (s *Service) forgetUser(id string) {
	s.usersMu.Lock()
	delete(s.users, id)
	s.usersMu.Unlock()
}

// clientMaySee is maySee for a connected client, from the cache (no I/O when warm).
func (s *Service) clientMaySee(cl *realtime.Client, c cell.Chat) bool {
	if !cl.Staff {
		return false
	}
	if cl.Admin {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u, err := s.cachedUser(ctx, cl.Subject)
	if cell.ErrorCode(err) == cell.ENotFound {
		return viewer{id: cl.Subject}.maySee(c) // as in Service.viewer
	}
	if err != nil || u.Disabled {
		return false
	}
	return viewer{id: u.ID, depts: u.Departments}.maySee(c)
}

// capacityOf returns the agent's capacity: their own or the tenant's default.
func (s *Service) capacityOf(ctx context.Context, u cell.User) int {
	if u.Capacity > 0 {
		return u.Capacity
	}
	return s.settings(ctx).DefaultCapacity
}

// assign makes agent the chat's assignee (accept, auto assignment or transfer to an agent).
// Two inserts decide it, so it holds under any interleaving, across processes too:
//  1. a capacity slot of the agent (store.ClaimSlot: at most capacity slots exist per agent);
//  2. the chat's assignment claim "assign:<chatId>:<n>" for the next round n: exactly one wins.
//
// The loser of step 2 gives its slot back. Only then is the chat document updated, under the
// chat's lock. A crash between step 2 and the update is rolled forward by the sweeper
// (repairAssignments); a slot left by a crash between steps 1 and 2 is freed after staleClaimAge.
func (s *Service) assign(ctx context.Context, c cell.Chat, agent cell.User, actor cell.Author, typ, note string) (cell.Chat, error) {
	if agent.Disabled {
		return cell.Chat{}, cell.Errorf(cell.EForbidden, "the agent is disabled")
	}
	// Assignments of one chat take turns in this process: when 50 agents race for a chat, the
	// first one claims, and the others, once it is done, find the round taken by one point read
	// instead of each claiming a slot, losing the round and giving the slot back (three writes
	// each). Across replicas the claims below still decide.
	release, waited := s.gateAssign(c.ID)
	defer release()
	if waited {
		fresh, err := s.store.Chat(ctx, c.ID)
		if err != nil {
			return cell.Chat{}, err
		}
		if fresh.Assignment > c.Assignment {
			if fresh.Status == cell.ChatActive && fresh.AgentID == agent.ID {
				return s.withLast(fresh), nil
			}
			return cell.Chat{}, cell.Errorf(cell.EConflict, "chat was accepted by another agent")
		}
	}
	capacity := s.capacityOf(ctx, agent)
	slot, err := s.store.ClaimSlot(ctx, agent.ID, capacity, c.ID)
	if cell.ErrorCode(err) == cell.EConflict && s.freeStaleSlots(ctx, agent.ID, capacity) {
		slot, err = s.store.ClaimSlot(ctx, agent.ID, capacity, c.ID)
	}
	if err != nil {
		return cell.Chat{}, err
	}
	round := c.Assignment + 1
	holder, _, err := s.store.Claim(ctx, fmt.Sprintf("assign:%s:%d", c.ID, round), agent.ID)
	if err != nil || holder != agent.ID {
		_ = s.store.Release(ctx, slot, c.ID)
		if err != nil {
			return cell.Chat{}, err
		}
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat was accepted by another agent")
	}
	return s.completeAssignment(ctx, c.ID, round, agent, slot, actor, typ, note)
}

// gateAssign takes the chat's assignment turn in this process; waited reports whether another
// assignment of the chat held it first. Call release when done.
func (s *Service) gateAssign(chatID string) (release func(), waited bool) {
	s.gateMu.Lock()
	g := s.gates[chatID]
	if g == nil {
		g = &assignGate{}
		s.gates[chatID] = g
	}
	g.refs++
	s.gateMu.Unlock()
	if !g.mu.TryLock() {
		g.mu.Lock()
		waited = true
	}
	return func() {
		g.mu.Unlock()
		s.gateMu.Lock()
		if g.refs--; g.refs == 0 {
			delete(s.gates, chatID)
		}
		s.gateMu.Unlock()
	}, waited
}

// assignGate is one chat's assignment turn; refs counts holders and waiters (Service.gateMu).
type assignGate struct {
	mu   sync.Mutex
	refs int
}

// completeAssignment records the assignment `round` (whose claim agent holds) in the chat
// document and publishes it. It is idempotent: a chat already past round is returned as is.
func (s *Service) completeAssignment(ctx context.Context, chatID string, round int, agent cell.User, slot string, actor cell.Author, typ, note string) (cell.Chat, error) {
	var prevAgent, prevSlot string
	var changed bool
	out, err := s.mutateChat(ctx, chatID, func(c *cell.Chat) error {
		if c.Assignment >= round {
			if c.AgentID == agent.ID && c.Status == cell.ChatActive {
				return nil
			}
			return cell.Errorf(cell.EConflict, "chat was accepted by another agent")
		}
		if !c.Status.Open() { // closed while we claimed
			return cell.Errorf(cell.EConflict, "chat is already %s", c.Status)
		}
		changed = true
		now := s.now()
		prevAgent, prevSlot = c.AgentID, c.SlotID
		c.History = append(c.History, cell.ChatTransition{Type: typ, From: c.Status, To: cell.ChatActive, Actor: actor, At: now, AgentID: agent.ID, DepartmentID: c.DepartmentID, Note: note})
		c.Status, c.AgentID, c.AgentName, c.SlotID, c.Assignment = cell.ChatActive, agent.ID, agent.Name, slot, round
		if c.AcceptedAt == nil {
			c.AcceptedAt = &now
		}
		return nil
	})
	if err != nil {
		_ = s.store.Release(ctx, slot, chatID)
		return cell.Chat{}, err
	}
	if !changed {
		return out, nil
	}
	if prevSlot != "" && prevSlot != slot {
		_ = s.store.Release(ctx, prevSlot, chatID)
	}
	s.afterReassign(ctx, out, prevAgent)
	event := "chat.accepted"
	if typ == cell.TransitionTransferred {
		event = "chat.transferred"
	}
	s.publishChat(event, out)
	s.emit(ctx, event, fmt.Sprintf("%s:%s:%d", event, chatID, round), out)
	s.kickRouting()
	return out, nil
}

// afterReassign takes the sockets of staff who may no longer follow the chat out of its room
// (the previous agent after a transfer or unassignment), telling them with a "chat.left" frame.
func (s *Service) afterReassign(ctx context.Context, c cell.Chat, prevAgent string) {
	room := realtime.ChatRoom(s.cfg.TenantID, c.ID)
	for _, cl := range s.hub.Members(room) {
		if cl.Staff && !s.clientMaySee(cl, c) {
			s.hub.Leave(cl, room)
			if data, err := marshalFrame(ChatLeftFrame{Type: "chat.left", ChatID: c.ID}); err == nil {
				cl.Send(data, false)
			}
		}
	}
	_ = prevAgent
}

// ChatLeftFrame tells a staff socket it no longer follows a chat (transferred away, unassigned,
// or removed from the chat's department).
type ChatLeftFrame struct {
	Type   string `json:"type"`
	ChatID string `json:"chatId"`
}

// ReauthorizeRooms re-checks every chat room a user's sockets follow and leaves those the user
// may no longer see (after a department change). It returns how many memberships ended.
func (s *Service) ReauthorizeRooms(ctx context.Context, userID string) int {
	n := 0
	prefix := realtime.ChatRoom(s.cfg.TenantID, "")
	for _, cl := range s.hub.Clients(func(c *realtime.Client) bool { return c.Subject == userID }) {
		for _, room := range s.hub.Rooms(cl) {
			if !strings.HasPrefix(room, prefix) {
				continue
			}
			chatID := strings.TrimPrefix(room, prefix)
			c, err := s.store.Chat(ctx, chatID)
			if err == nil && s.clientMaySee(cl, c) {
				continue
			}
			s.hub.Leave(cl, room)
			if data, err := marshalFrame(ChatLeftFrame{Type: "chat.left", ChatID: chatID}); err == nil {
				cl.Send(data, false)
			}
			n++
		}
	}
	return n
}

// freeStaleSlots deletes the agent's slots whose chat is not assigned to the agent through that
// slot and which are older than staleClaimAge (left by a crash between claiming a slot and the
// chat's assignment). It reports whether it freed any.
func (s *Service) freeStaleSlots(ctx context.Context, agentID string, capacity int) bool {
	slots, err := s.store.AgentSlots(ctx, agentID, max(capacity, cell.MaxCapacity))
	if err != nil {
		return false
	}
	freed := false
	for _, sl := range slots {
		if s.now().Sub(sl.At) < staleClaimAge {
			continue
		}
		c, err := s.store.Chat(ctx, sl.ChatID)
		if err == nil && c.Status == cell.ChatActive && c.AgentID == agentID && c.SlotID == sl.ID {
			continue
		}
		if err != nil && cell.ErrorCode(err) != cell.ENotFound {
			continue
		}
		if s.store.Release(ctx, sl.ID, sl.ChatID) == nil {
			freed = true
		}
	}
	return freed
}

// kickRouting asks the routing loop for a pass (auto assignment and queue positions); passes
// coalesce.
func (s *Service) kickRouting() {
	select {
	case s.routeKick <- struct{}{}:
	default:
	}
}

// routeOnce assigns queued chats of auto-routed departments to the least-busy online agents
// with free capacity, oldest chat first, then publishes queue positions to waiting visitors.
func (s *Service) routeOnce(ctx context.Context) {
	st := s.settings(ctx)
	chats, _, err := s.openChats(ctx)
	if err != nil {
		s.log.Warn("routing: chats not read", "error", err)
		return
	}
	depts, _ := s.store.Departments(ctx)
	routingOf := map[string]string{"": st.Routing}
	for _, d := range depts {
		routingOf[d.ID] = d.Routing
		if d.Routing == "" {
			routingOf[d.ID] = st.Routing
		}
	}
	load := map[string]int{}
	var queued []dirEntry
	for _, c := range chats {
		switch c.Status {
		case cell.ChatActive:
			load[c.AgentID]++
		case cell.ChatQueued:
			queued = append(queued, c)
		}
	}
	var online []cell.User
	if len(queued) > 0 {
		online = s.onlineAgents(ctx)
	}
	for _, e := range queued {
		if routingOf[e.DepartmentID] != cell.RoutingAuto {
			continue
		}
		var candidates []cell.User
		for _, u := range online {
			if e.DepartmentID == "" || contains(u.Departments, e.DepartmentID) {
				if load[u.ID] < s.capacityOf(ctx, u) {
					candidates = append(candidates, u)
				}
			}
		}
		if len(candidates) == 0 {
			continue
		}
		// The directory only names candidates: assign from the stored chat.
		c, err := s.store.Chat(ctx, e.ID)
		if err != nil || c.Status != cell.ChatQueued {
			continue
		}
		sort.SliceStable(candidates, func(i, j int) bool { return load[candidates[i].ID] < load[candidates[j].ID] })
		for _, u := range candidates {
			if _, err := s.assign(ctx, c, u, cell.SystemActor, cell.TransitionAssigned, ""); err == nil {
				load[u.ID]++
				break
			}
		}
	}
	s.publishQueuePositions(ctx)
}

// QueueStatus is a waiting visitor's place in the queue: Position 1 is next; EstimatedWaitSeconds
// is Position × the median wait of the last accepted chats ÷ the online agents (at least 1),
// rounded up; 0 when there is no history yet.
type QueueStatus struct {
	Type                 string `json:"type"`
	ChatID               string `json:"chatId"`
	Position             int    `json:"position"`
	EstimatedWaitSeconds int    `json:"estimatedWaitSeconds"`
}

// queueStatuses computes the QueueStatus of every queued chat: positions count the older queued
// chats of the same department.
func (s *Service) queueStatuses(ctx context.Context) (map[string]QueueStatus, error) {
	chats, waits, err := s.openChats(ctx)
	if err != nil {
		return nil, err
	}
	median := Median(waits)
	agents := max(1, len(s.onlineAgents(ctx)))
	pos := map[string]int{}
	out := map[string]QueueStatus{}
	for _, c := range chats { // oldest first
		if c.Status != cell.ChatQueued {
			continue
		}
		pos[c.DepartmentID]++
		p := pos[c.DepartmentID]
		out[c.ID] = QueueStatus{Type: "queue.position", ChatID: c.ID, Position: p,
			EstimatedWaitSeconds: int(math.Ceil(float64(p) * median / float64(agents)))}
	}
	return out, nil
}

// QueuePosition returns the visitor's chat's place in the queue (not_found once it left it).
func (s *Service) QueuePosition(ctx context.Context, p cell.Principal, chatID string) (QueueStatus, error) {
	if _, err := s.Chat(ctx, p, chatID); err != nil {
		return QueueStatus{}, err
	}
	all, err := s.queueStatuses(ctx)
	if err != nil {
		return QueueStatus{}, err
	}
	q, ok := all[chatID]
	if !ok {
		return QueueStatus{}, cell.Errorf(cell.ENotFound, "the chat is not in the queue")
	}
	return q, nil
}

// publishQueuePositions sends each queued chat's room its QueueStatus when it changed.
func (s *Service) publishQueuePositions(ctx context.Context) {
	all, err := s.queueStatuses(ctx)
	if err != nil {
		return
	}
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	for id, q := range all {
		if s.lastQueue[id] != q {
			_ = s.hub.Publish(realtime.ChatRoom(s.cfg.TenantID, id), q, true, nil)
		}
	}
	s.lastQueue = all
}

// Presence states of an agent.
const (
	PresenceOnline  = "online"
	PresenceAway    = "away"
	PresenceOffline = "offline"
)

// presence is one agent's connections in this process and chosen status.
type presence struct {
	conns    int
	away     bool
	lastBeat time.Time
}

// heartbeatTimeout: an agent whose sockets sent nothing (frame or pong) for this long counts as
// offline even before the sockets' read deadlines close them.
const heartbeatTimeout = 75 * time.Second

// PresenceFrame announces an agent's presence to the tenant's staff (lossy).
type PresenceFrame struct {
	Type    string `json:"type"`
	AgentID string `json:"agentId"`
	Status  string `json:"status"`
}

// AgentConnected records a new socket of a staff member (online unless they chose away).
func (s *Service) AgentConnected(id string) {
	s.presMu.Lock()
	p := s.presence[id]
	if p == nil {
		p = &presence{}
		s.presence[id] = p
	}
	p.conns++
	p.lastBeat = time.Now()
	s.presMu.Unlock()
	s.announcePresence(id)
	s.kickRouting()
}

// AgentDisconnected records that one socket of a staff member closed.
func (s *Service) AgentDisconnected(id string) {
	s.presMu.Lock()
	if p := s.presence[id]; p != nil {
		p.conns--
		if p.conns <= 0 {
			delete(s.presence, id)
		}
	}
	s.presMu.Unlock()
	s.announcePresence(id)
}

// Heartbeat records that a staff member's socket is alive.
func (s *Service) Heartbeat(id string) {
	s.presMu.Lock()
	if p := s.presence[id]; p != nil {
		p.lastBeat = time.Now()
	}
	s.presMu.Unlock()
}

// SetPresence sets a connected staff member's status to online or away.
func (s *Service) SetPresence(p cell.Principal, status string) error {
	if err := requireStaff(p); err != nil {
		return err
	}
	if status != PresenceOnline && status != PresenceAway {
		return cell.Errorf(cell.EInvalid, "status must be online or away")
	}
	s.presMu.Lock()
	if pr := s.presence[p.Subject]; pr != nil {
		pr.away = status == PresenceAway
		pr.lastBeat = time.Now()
	}
	s.presMu.Unlock()
	s.announcePresence(p.Subject)
	s.kickRouting()
	return nil
}

// PresenceOf returns the agent's presence status in this process.
func (s *Service) PresenceOf(id string) string {
	s.presMu.Lock()
	defer s.presMu.Unlock()
	p := s.presence[id]
	switch {
	case p == nil || p.conns <= 0 || time.Since(p.lastBeat) > heartbeatTimeout:
		return PresenceOffline
	case p.away:
		return PresenceAway
	default:
		return PresenceOnline
	}
}

func (s *Service) announcePresence(id string) {
	_ = s.hub.Publish(realtime.StaffRoom(s.cfg.TenantID), PresenceFrame{Type: "presence", AgentID: id, Status: s.PresenceOf(id)}, true, nil)
}

// onlineAgents returns the enabled staff members whose presence is online.
func (s *Service) onlineAgents(ctx context.Context) []cell.User {
	s.presMu.Lock()
	ids := make([]string, 0, len(s.presence))
	for id := range s.presence {
		ids = append(ids, id)
	}
	s.presMu.Unlock()
	var out []cell.User
	for _, id := range ids {
		if s.PresenceOf(id) != PresenceOnline {
			continue
		}
		if u, err := s.cachedUser(ctx, id); err == nil && !u.Disabled && u.HasRole(cell.RoleAgent) {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Availability says whether the widget should offer a chat (Online) or the offline form, and why.
type Availability struct {
	Online       bool   `json:"online"`
	Reason       string `json:"reason,omitempty"`
	AgentsOnline int    `json:"agentsOnline"`
	// AcceptsChats is false only when new chats are refused (outside business hours, or no
	// agent online while the tenant requires one).
	AcceptsChats bool `json:"acceptsChats"`
}

// Availability reports whether agents are online and the tenant is within its business hours.
func (s *Service) Availability(ctx context.Context) Availability {
	st := s.settings(ctx)
	n := len(s.onlineAgents(ctx))
	a := Availability{Online: true, AgentsOnline: n, AcceptsChats: true}
	switch {
	case !st.BusinessHours.OpenAt(s.now()):
		a.Online, a.AcceptsChats, a.Reason = false, false, "outside business hours; leave a message and we will get back to you"
	case n == 0:
		a.Online, a.Reason = false, "no agent is online right now; leave a message and we will get back to you"
		a.AcceptsChats = !st.RequireOnlineAgent
	}
	return a
}

// settings returns the tenant's settings, cached for userCacheTTL (defaults if unreadable).
func (s *Service) settings(ctx context.Context) cell.Settings {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if time.Since(s.setAt) < userCacheTTL {
		return s.setCache
	}
	st, err := s.store.Settings(ctx)
	if err != nil {
		s.log.Warn("settings not read; using the last known", "error", err)
		if s.setAt.IsZero() {
			_ = s.setCache.Normalize()
		}
		return s.setCache
	}
	s.setCache, s.setAt = st, time.Now()
	return st
}

// routeLoop runs routing passes when kicked, and at least every routeEvery.
func (s *Service) routeLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(routeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.routeKick:
		}
		s.routeOnce(ctx)
	}
}

// routeEvery is the routing pass period when nothing kicks it (a safety net for kicks made by
// other processes and presence timeouts).
const routeEvery = 2 * time.Second

// sweepTimers applies the inactivity timers and repairs crash leftovers, once:
//   - an active chat without a message for AutoResolveMinutes is resolved by the system;
//   - a queued chat waiting AbandonMinutes (since it was created or reopened) is abandoned;
//   - a queued chat whose next assignment claim exists and is older than staleClaimAge (a crash
//     between the claim and the chat update) is assigned to the claim's holder (rolled forward).
func (s *Service) sweepTimers(ctx context.Context) {
	st := s.settings(ctx)
	entries, _, err := s.openChats(ctx)
	if err != nil {
		return
	}
	now := s.now()
	autoResolve := time.Duration(st.AutoResolveMinutes) * time.Minute
	abandon := time.Duration(st.AbandonMinutes) * time.Minute
	for _, e := range entries {
		// The directory names candidates (its activity time may be older than the chat's);
		// each is decided on the stored chat with this process's newer hints.
		switch {
		case e.Status == cell.ChatActive && st.AutoResolveMinutes > 0 && now.Sub(s.activityOf(e)) > autoResolve:
		case e.Status == cell.ChatQueued:
		default:
			continue
		}
		c, err := s.store.Chat(ctx, e.ID)
		if err != nil {
			continue
		}
		c = s.withLast(c)
		switch c.Status {
		case cell.ChatActive:
			if st.AutoResolveMinutes > 0 && now.Sub(c.LastActivityAt) > autoResolve {
				if _, err := s.close(ctx, c.ID, cell.SystemActor); err != nil {
					s.log.Warn("auto-resolve failed", "chatId", c.ID, "error", err)
				}
			}
		case cell.ChatQueued:
			if s.repairAssignment(ctx, c) {
				continue
			}
			since := c.CreatedAt
			if n := len(c.History); n > 0 {
				since = c.History[n-1].At
			}
			if st.AbandonMinutes > 0 && now.Sub(since) > abandon {
				if _, err := s.close(ctx, c.ID, cell.SystemActor); err != nil {
					s.log.Warn("abandon failed", "chatId", c.ID, "error", err)
				}
			}
		}
	}
}

// activityOf is an open chat's last activity as this process knows it: the directory's, or the
// newer time of a message this process noted since.
func (s *Service) activityOf(e dirEntry) time.Time {
	s.lastMu.Lock()
	n, ok := s.last[e.ID]
	s.lastMu.Unlock()
	if ok && n.at.After(e.LastActivityAt) {
		return n.at
	}
	return e.LastActivityAt
}

// repairAssignment rolls forward an assignment whose claim was won but never recorded (the
// winner crashed in between); it reports whether it did.
func (s *Service) repairAssignment(ctx context.Context, c cell.Chat) bool {
	round := c.Assignment + 1
	holder, at, err := s.store.ClaimInfo(ctx, fmt.Sprintf("assign:%s:%d", c.ID, round))
	if err != nil || s.now().Sub(at) < staleClaimAge {
		return false
	}
	agent, err := s.store.User(ctx, holder)
	if err != nil {
		return false
	}
	slot, err := s.store.ClaimSlot(ctx, agent.ID, cell.MaxCapacity, c.ID) // the winner's slot, or any: capacity was checked when it won
	if err != nil {
		return false
	}
	_, err = s.completeAssignment(ctx, c.ID, round, agent, slot, cell.SystemActor, cell.TransitionAccepted, "")
	return err == nil
}

// timerEvery is the period of sweepTimers.
const timerEvery = 10 * time.Second

// SweepTimers runs the inactivity timers and crash repairs once now (tests and operators; the
// cell also runs them every timerEvery).
func (s *Service) SweepTimers(ctx context.Context) { s.sweepTimers(ctx) }

// SetClock replaces the service's clock (tests of timers and reports).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

var _ = mongodb.SlotID
