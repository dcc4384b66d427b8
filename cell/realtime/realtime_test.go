package realtime

import (
	"fmt"
	"testing"
)

func TestPublishReachesRoomMembersExceptSender(t *testing.T) {
	h := NewHub()
	a, b, outsider := NewClient("u", "s"), NewClient("u", "s"), NewClient("u", "s")
	room := ChatRoom("t1", "c1")
	for _, c := range []*Client{a, b} {
		if err := h.Join(c, room); err != nil {
			t.Fatal(err)
		}
	}
	_ = h.Join(outsider, ChatRoom("t2", "c1"))
	if err := h.Publish(room, map[string]int{"seq": 1}, false, a); err != nil {
		t.Fatal(err)
	}
	if len(a.Outbox()) != 0 || len(b.Outbox()) != 1 || len(outsider.Outbox()) != 0 {
		t.Fatalf("outboxes a=%d b=%d outsider=%d, want 0 1 0", len(a.Outbox()), len(b.Outbox()), len(outsider.Outbox()))
	}
	if got := string(<-b.Outbox()); got != `{"seq":1}` {
		t.Fatalf("frame %s", got)
	}
}

func TestSlowConsumerLosesTypingFirstThenIsDropped(t *testing.T) {
	h := NewHub()
	c := NewClient("u", "s")
	room := StaffRoom("t1")
	_ = h.Join(c, room)
	for i := 0; i < OutboxSize; i++ {
		h.Publish(room, i, false, nil)
	}
	h.Publish(room, "typing", true, nil) // lossy: dropped, client kept
	if c.CloseReason() != "" {
		t.Fatalf("lossy frame closed the client: %q", c.CloseReason())
	}
	h.Publish(room, "message", false, nil) // reliable: the client is dropped, not blocked on
	if c.CloseReason() != "slow consumer" {
		t.Fatalf("close reason %q, want slow consumer", c.CloseReason())
	}
	if c.Send([]byte("x"), false) {
		t.Fatal("send to a closed client succeeded")
	}
}

func TestJoinsAreBoundedAndRemoveCleansUp(t *testing.T) {
	h := NewHub()
	c := NewClient("u", "s")
	for i := 0; i < MaxRoomsPerClient; i++ {
		if err := h.Join(c, ChatRoom("t", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Join(c, ChatRoom("t", "one-more")); err != ErrTooManyRooms {
		t.Fatalf("join past the bound: %v", err)
	}
	if err := h.Join(c, ChatRoom("t", "0")); err != nil {
		t.Fatalf("re-join is idempotent, got %v", err)
	}
	h.Remove(c)
	if rooms, members := h.Stats(); rooms != 0 || members != 0 {
		t.Fatalf("after Remove: %d rooms, %d memberships", rooms, members)
	}
}

func TestDisconnectClosesMatchingClients(t *testing.T) {
	h := NewHub()
	a, b := NewClient("agent-1", "s1"), NewClient("agent-2", "s2")
	_ = h.Join(a, StaffRoom("t"))
	_ = h.Join(b, StaffRoom("t"))
	if n := h.Disconnect(func(c *Client) bool { return c.Subject == "agent-1" }, "logged out"); n != 1 {
		t.Fatalf("closed %d, want 1", n)
	}
	if a.CloseReason() != "logged out" || b.CloseReason() != "" {
		t.Fatalf("reasons %q %q", a.CloseReason(), b.CloseReason())
	}
	h.Publish(StaffRoom("t"), 1, false, nil)
	if len(a.Outbox()) != 0 || len(b.Outbox()) != 1 {
		t.Fatal("a disconnected client still receives")
	}
}
