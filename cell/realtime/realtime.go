// Package realtime is a cell's in-memory WebSocket fan-out: clients join rooms and receive the
// frames published to them. Rooms are named "tenant:<tenantId>:chat:<chatId>" (one chat) and
// "tenant:<tenantId>:staff" (every agent and tenant-admin: queue events).
//
// Delivery is never allowed to block a publisher or grow memory without bound: each client has a
// bounded outbox. Lossy frames (typing, presence) are dropped when it is full; a reliable frame
// (a message, a chat event) that does not fit disconnects the client instead, and the client
// recovers what it missed with "resume since seq" (DESIGN.md §6).
package realtime

import (
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// OutboxSize is how many frames may wait for a slow client before it is dropped.
const OutboxSize = 256

// MaxRoomsPerClient bounds the rooms one connection may join.
const MaxRoomsPerClient = 64

// ReasonSlowConsumer is the close reason of a client dropped for not keeping up.
const ReasonSlowConsumer = "slow consumer"

// ErrTooManyRooms is returned by Join when a client already holds MaxRoomsPerClient rooms.
var ErrTooManyRooms = errors.New("too many joined chats on this connection")

// ChatRoom returns the room of one chat.
func ChatRoom(tenantID, chatID string) string { return "tenant:" + tenantID + ":chat:" + chatID }

// StaffRoom returns the room every agent and tenant-admin of the tenant joins.
func StaffRoom(tenantID string) string { return "tenant:" + tenantID + ":staff" }

// Client is one connection's membership and outbox. The connection's writer drains Outbox until
// Done is closed.
type Client struct {
	// Subject and SessionID identify who the connection belongs to, so a logout or a removed
	// agent can be disconnected (Hub.Disconnect).
	Subject, SessionID string
	// Staff is true for agents and tenant-admins; Admin for tenant-admins. Set them before the
	// client joins any room: filters (notes, department scoping) read them.
	Staff, Admin bool

	outbox chan []byte
	done   chan struct{}
	once   sync.Once
	// Reason is why the hub closed the client ("slow consumer"); empty when closed by its owner.
	reason string
	rooms  map[string]struct{} // guarded by Hub.mu
}

// NewClient returns a client of subject (user or visitor id) in session sid, with an empty
// outbox. It receives nothing until it joins rooms.
func NewClient(subject, sid string) *Client {
	return &Client{Subject: subject, SessionID: sid, outbox: make(chan []byte, OutboxSize), done: make(chan struct{}), rooms: map[string]struct{}{}}
}

// Outbox returns the frames to write, in order.
func (c *Client) Outbox() <-chan []byte { return c.outbox }

// Done is closed when the client is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// CloseReason returns why the hub closed the client, or "" if it did not.
func (c *Client) CloseReason() string {
	select {
	case <-c.done:
		return c.reason
	default:
		return ""
	}
}

func (c *Client) close(reason string) {
	c.once.Do(func() {
		c.reason = reason
		close(c.done)
	})
}

// Send queues one frame. A lossy frame is dropped if the outbox is full; a reliable one closes
// the client as a slow consumer. It reports whether the frame was queued.
func (c *Client) Send(frame []byte, lossy bool) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	if lossy && len(c.outbox) >= OutboxSize/2 {
		return false // typing and presence are dropped first, long before messages are at risk
	}
	select {
	case c.outbox <- frame:
		return true
	default:
		if !lossy {
			c.close(ReasonSlowConsumer)
		}
		return false
	}
}

// SendWait queues one reliable frame, waiting up to timeout for room in the outbox. It is for
// a connection's own replies (a long resume), sent from its reader goroutine: waiting slows only
// this client's reading, and a client that does not drain its outbox within timeout is closed as
// a slow consumer. It reports whether the frame was queued.
func (c *Client) SendWait(frame []byte, timeout time.Duration) bool {
	select {
	case c.outbox <- frame:
		return true
	case <-c.done:
		return false
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case c.outbox <- frame:
		return true
	case <-c.done:
		return false
	case <-t.C:
		c.close(ReasonSlowConsumer)
		return false
	}
}

// Hub routes frames to the clients of a room. The zero value is not usable; call NewHub.
type Hub struct {
	mu    sync.RWMutex
	rooms map[string]map[*Client]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{rooms: map[string]map[*Client]struct{}{}} }

// Join adds c to room (idempotent). It returns ErrTooManyRooms past MaxRoomsPerClient.
func (h *Hub) Join(c *Client, room string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := c.rooms[room]; ok {
		return nil
	}
	if len(c.rooms) >= MaxRoomsPerClient {
		return ErrTooManyRooms
	}
	c.rooms[room] = struct{}{}
	members := h.rooms[room]
	if members == nil {
		members = map[*Client]struct{}{}
		h.rooms[room] = members
	}
	members[c] = struct{}{}
	return nil
}

// Leave removes c from room.
func (h *Hub) Leave(c *Client, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leave(c, room)
}

func (h *Hub) leave(c *Client, room string) {
	delete(c.rooms, room)
	if members := h.rooms[room]; members != nil {
		delete(members, c)
		if len(members) == 0 {
			delete(h.rooms, room)
		}
	}
}

// Remove takes c out of every room and closes it.
func (h *Hub) Remove(c *Client) {
	h.mu.Lock()
	for room := range c.rooms {
		h.leave(c, room)
	}
	h.mu.Unlock()
	c.close("")
}

// Publish marshals frame once and queues it to every client in room except `except` (may be
// nil). Lossy frames may be dropped for slow clients; reliable ones disconnect slow clients.
func (h *Hub) Publish(room string, frame any, lossy bool, except *Client) error {
	return h.PublishTo(room, frame, lossy, except, nil)
}

// PublishTo is Publish restricted to the clients for which filter returns true (nil: all). The
// filter runs without the hub's lock held.
func (h *Hub) PublishTo(room string, frame any, lossy bool, except *Client, filter func(*Client) bool) error {
	data, err := json.Marshal(frame)
	if err != nil {
		return err
	}
	targets := h.Members(room)
	n := 0
	for _, c := range targets {
		if c != except && (filter == nil || filter(c)) {
			targets[n] = c
			n++
		}
	}
	targets = targets[:n]
	for _, c := range targets {
		c.Send(data, lossy)
	}
	return nil
}

// Members returns the clients in room at the time of the call.
func (h *Hub) Members(room string) []*Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Client, 0, len(h.rooms[room]))
	for c := range h.rooms[room] {
		out = append(out, c)
	}
	return out
}

// Rooms returns the rooms c is in at the time of the call.
func (h *Hub) Rooms(c *Client) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		out = append(out, r)
	}
	return out
}

// Clients returns every client in any room for which match is true.
func (h *Hub) Clients(match func(*Client) bool) []*Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := map[*Client]bool{}
	var out []*Client
	for _, members := range h.rooms {
		for c := range members {
			if !seen[c] && match(c) {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// Disconnect closes, with reason, every client for which match is true and takes it out of its
// rooms. It returns how many it closed.
func (h *Hub) Disconnect(match func(*Client) bool, reason string) int {
	h.mu.Lock()
	seen := map[*Client]bool{}
	for _, members := range h.rooms {
		for c := range members {
			if !seen[c] && match(c) {
				seen[c] = true
			}
		}
	}
	for c := range seen {
		for room := range c.rooms {
			h.leave(c, room)
		}
	}
	h.mu.Unlock()
	for c := range seen {
		c.close(reason)
	}
	return len(seen)
}

// Stats returns the number of rooms and of memberships.
func (h *Hub) Stats() (rooms, memberships int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, m := range h.rooms {
		memberships += len(m)
	}
	return len(h.rooms), memberships
}
