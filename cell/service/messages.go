package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"atende/cell"
	"atende/cell/realtime"
)

// SendInput is one message to append. ClientMsgID makes the send idempotent; AttachmentID, when
// set, names an attachment of the same chat whose file was uploaded.
type SendInput struct {
	ChatID       string
	Body         string
	ClientMsgID  string
	AttachmentID string
	// Private makes the message a note: staff only, in the chat's separate note stream.
	Private bool
}

// maxSeqRetries bounds how often an append retries after another process took its seq.
const maxSeqRetries = 8

// SendMessage appends a message to a chat and publishes it. The message is persisted before this
// returns (and so before any ack). The same ClientMsgID again returns the stored message with
// replay = true; nothing new is stored or published (the unique clientMsgId index refuses the
// insert, and only then is the stored message looked up, so first sends cost one insert). Seqs are per chat, 1, 2, 3 … without gaps:
// this process serialises appends per chat, and the unique (chatId, seq) index arbitrates between
// processes. Who may send: the chat's visitor while it is open; the assigned agent while active
// (a tenant-admin too).
func (s *Service) SendMessage(ctx context.Context, p cell.Principal, in SendInput) (msg cell.Message, replay bool, err error) {
	if !clientMsgIDPattern.MatchString(in.ClientMsgID) {
		return cell.Message{}, false, cell.Errorf(cell.EInvalid, "clientMsgId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
	}
	in.Body = strings.TrimSpace(in.Body)
	if err := validText("body", in.Body, MaxBodyChars); err != nil {
		return cell.Message{}, false, err
	}
	if in.Body == "" && in.AttachmentID == "" {
		return cell.Message{}, false, cell.Errorf(cell.EInvalid, "a message needs a body or an attachment")
	}
	if in.Private && !p.IsStaff() {
		return cell.Message{}, false, cell.Errorf(cell.EForbidden, "only agents and tenant-admins write notes")
	}
	gen := s.chatGen(in.ChatID) // before the read: append re-reads only if the chat changed since
	chat, err := s.Chat(ctx, p, in.ChatID)
	if err != nil {
		return cell.Message{}, false, err
	}
	if p.HasRole(cell.RoleVisitor) && !chat.Status.Open() {
		// A visitor writing into a closed chat reopens it within the tenant's window.
		if chat, err = s.reopen(ctx, p, chat); err != nil {
			return s.replayOr(ctx, p, in.ChatID, in.ClientMsgID, false, err)
		}
	}
	if err := s.maySend(p, chat, in.Private); err != nil {
		return s.replayOr(ctx, p, chat.ID, in.ClientMsgID, in.Private, err)
	}
	msg = cell.Message{ChatID: chat.ID, ClientMsgID: in.ClientMsgID, From: p.Author(), Body: in.Body, CreatedAt: s.now(), Private: in.Private}
	if in.AttachmentID != "" {
		att, err := s.store.Attachment(ctx, in.AttachmentID)
		if err != nil || att.ChatID != chat.ID {
			return cell.Message{}, false, cell.Errorf(cell.EInvalid, "attachmentId does not name an attachment of this chat")
		}
		if size, err := s.blob.Size(ctx, att.Key); err != nil {
			return cell.Message{}, false, err
		} else if size != att.Size {
			return cell.Message{}, false, cell.Errorf(cell.EInvalid, "the uploaded file is %d bytes, %d were announced", size, att.Size)
		}
		if err := s.checkMagic(ctx, att); err != nil {
			return cell.Message{}, false, err
		}
		msg.Attachment = att.Ref()
	}
	replayed, err := s.append(ctx, p, &msg, chat, gen)
	if err != nil {
		return s.replayOr(ctx, p, chat.ID, in.ClientMsgID, in.Private, err)
	}
	if !replayed && !msg.Private {
		s.emit(ctx, "message.created", "message.created:"+msg.ID, msg)
	}
	return msg, replayed, nil
}

// replayOr answers a refused send: if the sender's message with clientMsgID was stored before
// (its ack was lost and the chat has since closed), the stored message, else err.
func (s *Service) replayOr(ctx context.Context, p cell.Principal, chatID, clientMsgID string, private bool, err error) (cell.Message, bool, error) {
	if cell.ErrorCode(err) == cell.EConflict || cell.ErrorCode(err) == cell.EForbidden {
		if prev, perr := s.messageByClientID(ctx, chatID, clientMsgID, private, -1); perr == nil && prev.From.ID == p.Subject {
			return prev, true, nil
		}
	}
	return cell.Message{}, false, err
}

// maySend checks the sender's right to write into chat: the chat's visitor while it is open; the
// assigned agent while it is active; a tenant-admin while it is open. Notes may also be written
// by any staff member who may see the chat, in any state (a note after resolve is a common
// hand-over).
func (s *Service) maySend(p cell.Principal, chat cell.Chat, private bool) error {
	switch {
	case private && p.IsStaff():
		return nil // Chat() already checked the staff member may see it.
	case !chat.Status.Open():
		return cell.Errorf(cell.EConflict, "chat is %s", chat.Status)
	case p.HasRole(cell.RoleVisitor):
		return nil // Chat() already checked it is the visitor's own chat.
	case p.HasRole(cell.RoleTenantAdmin):
		return nil
	case p.HasRole(cell.RoleAgent) && chat.Status == cell.ChatActive && chat.AgentID == p.Subject:
		return nil
	default:
		return cell.Errorf(cell.EForbidden, "accept the chat before writing in it")
	}
}

// append assigns the next seq, inserts msg and publishes it to the chat's room, all under the
// chat's lock. seen is the chat as the caller read it when the chat's lock generation was gen
// (chatGen): if no write of this process changed the chat since, seen is used as is, else the
// chat is read again (one point read saved per message in the common case; writes of other
// replicas are arbitrated by the unique indexes, as before), so every subscriber receives a chat's messages in seq order, and re-checks under
// that lock that the sender may still write (a resolve may have won the lock first). If the same
// clientMsgId was stored first, msg is replaced by the stored one, nothing new is stored and
// replayed is true; a clientMsgId another sender used is a conflict.
//
// An insert that fails other than by a duplicate key (a driver timeout, say) has an unknown
// outcome: the database may have committed it all the same. The stream is then reloaded before
// the next append, and any seq stored but not published is published from the store before a
// higher one (publishStored), so the live stream never skips a seq.
func (s *Service) append(ctx context.Context, p cell.Principal, msg *cell.Message, seen cell.Chat, gen int64) (replayed bool, err error) {
	st := s.lockChat(msg.ChatID)
	defer s.unlockChat(msg.ChatID, st)
	chat := seen
	if gen == 0 || st.gen != gen {
		if chat, err = s.store.Chat(ctx, msg.ChatID); err != nil {
			return false, err
		}
	}
	if err := s.maySend(p, chat, msg.Private); err != nil {
		return false, err
	}
	sq := st.stream(msg.Private)
	for attempt := 0; attempt < maxSeqRetries; attempt++ {
		if err := s.loadStream(ctx, chat, sq, msg.Private); err != nil {
			return false, err
		}
		msg.Seq = sq.last + 1
		err = s.store.InsertMessage(ctx, msg)
		if err == nil {
			sq.last = msg.Seq
			s.publishStored(ctx, &chat, sq, msg.Private, msg)
			return false, nil
		}
		if cell.ErrorCode(err) != cell.EConflict {
			sq.loaded = false
			s.markBehind(chat.ID)
			return false, err
		}
		if prev, perr := s.messageByClientID(ctx, chat.ID, msg.ClientMsgID, msg.Private, sq.lastIfLoaded()); perr == nil {
			if prev.From.ID != msg.From.ID {
				return false, cell.Errorf(cell.EConflict, "clientMsgId %q is already used in this chat by someone else", msg.ClientMsgID)
			}
			*msg = prev
			// The first attempt may have been stored without being published (its answer was
			// lost): publish up to it now rather than at the next flush tick.
			if sq.loaded && prev.Seq <= sq.last {
				s.publishStored(ctx, &chat, sq, msg.Private, nil)
			}
			return true, nil
		}
		sq.loaded = false // another process took the seq: reload and retry
	}
	return false, errors.New("service: could not assign a message seq after retries")
}

// replayWindow is how many of a chat's newest seqs a replay looks through by point reads before
// it falls back to a scan (32): a retry is almost always of a message sent moments ago.
const replayWindow = 32

// messageByClientID finds the chat's message (or note) with clientMsgID: first among the newest
// replayWindow seqs up to last (-1: the chat's recorded lastSeq, with this process's newer hint),
// by point reads, then by the store's scan (FerretDB pushes down no filter but _id, so the scan
// reads every message of the tenant).
func (s *Service) messageByClientID(ctx context.Context, chatID, clientMsgID string, private bool, last int64) (cell.Message, error) {
	if last < 0 && !private {
		if c, err := s.store.Chat(ctx, chatID); err == nil {
			last = s.withLast(c).LastSeq
		}
	}
	if last > 0 {
		// The window may end before last (a gap cannot exist, but a seq past a stale hint may):
		// probe a little past it too.
		from := max(0, last-replayWindow)
		if recent, err := s.store.MessagesInRange(ctx, chatID, from, last+4, private); err == nil {
			for i := len(recent) - 1; i >= 0; i-- {
				if recent[i].ClientMsgID == clientMsgID {
					return recent[i], nil
				}
			}
		}
	}
	return s.store.MessageByClientID(ctx, chatID, clientMsgID, private)
}

// lastIfLoaded returns the stream's highest stored seq if known, else -1.
func (sq *seqStream) lastIfLoaded() int64 {
	if sq.loaded {
		return sq.last
	}
	return -1
}

// stream returns the chat's message stream (private false) or note stream (private true).
func (st *chatLock) stream(private bool) *seqStream {
	if private {
		return &st.notes
	}
	return &st.msgs
}

// loadStream (re)reads the stream's highest stored seq when it is not loaded. The first load of
// this lock entry also takes it as the published seq: what was stored before this process
// touched the chat reaches clients by their resume, not by this hub.
func (s *Service) loadStream(ctx context.Context, chat cell.Chat, sq *seqStream, private bool) error {
	if sq.loaded {
		return nil
	}
	last, err := s.lastSeqOf(ctx, chat, private)
	if err != nil {
		return err
	}
	sq.last, sq.loaded = last, true
	if !sq.pubKnown {
		sq.published, sq.pubKnown = last, true
	}
	return nil
}

// publishStored publishes, in seq order and under the chat's lock, the stream's stored seqs after
// the last published one up to sq.last; stored, when not nil, is the message with seq sq.last,
// just inserted, so it need not be read back. If a seq cannot be read, publishing stops before
// it (never out of order) and the chat is left to the flush tick (markBehind). It reports whether
// the stream is fully published.
func (s *Service) publishStored(ctx context.Context, chat *cell.Chat, sq *seqStream, private bool, stored *cell.Message) bool {
	if !sq.pubKnown || sq.published >= sq.last {
		return true
	}
	upTo := sq.last
	if stored != nil {
		upTo--
	}
	if upTo > sq.published {
		got, err := s.store.MessagesInRange(ctx, chat.ID, sq.published, upTo, private)
		if err != nil {
			s.log.Warn("stored messages not published yet", "chatId", chat.ID, "after", sq.published, "error", err)
		}
		for _, m := range got {
			s.publishOne(ctx, chat, sq, m, true)
		}
		if sq.published < upTo {
			s.markBehind(chat.ID)
			return false
		}
	}
	if stored != nil {
		s.publishOne(ctx, chat, sq, *stored, false)
	}
	return true
}

// publishOne publishes one stored message or note (m.Seq = sq.published+1) and records what it
// changes on the chat. recovered marks a message read back from the store rather than just
// inserted by this call: its webhook event is stored here, since the send that stored it
// returned an error (the event id is deterministic, so a second store is a no-op).
func (s *Service) publishOne(ctx context.Context, chat *cell.Chat, sq *seqStream, m cell.Message, recovered bool) {
	sq.published = m.Seq
	room := realtime.ChatRoom(s.cfg.TenantID, chat.ID)
	if m.Private {
		// Notes go to staff members following the chat only; never to the visitor.
		_ = s.hub.PublishTo(room, MessageEvent{Type: "note", Message: m}, false, nil, staffOnly)
		return
	}
	s.noteLast(chat.ID, m.Seq, preview(&m), m.CreatedAt)
	// Publishing never blocks (bounded outboxes), so holding the lock here is cheap.
	_ = s.hub.Publish(room, MessageEvent{Type: "message", Message: m}, false, nil)
	s.afterMessage(ctx, chat, &m)
	if recovered {
		s.emit(ctx, "message.created", "message.created:"+m.ID, m)
	}
}

// markBehind records that chatID may have stored seqs this process has not published.
func (s *Service) markBehind(chatID string) {
	s.seqsMu.Lock()
	s.behind[chatID] = true
	s.seqsMu.Unlock()
}

// catchUp publishes, for every chat marked behind, what was stored but not published, reloading
// both streams from the store. A chat stays marked until it is fully published.
func (s *Service) catchUp(ctx context.Context) {
	s.seqsMu.Lock()
	ids := make([]string, 0, len(s.behind))
	for id := range s.behind {
		ids = append(ids, id)
	}
	s.seqsMu.Unlock()
	for _, id := range ids {
		st := s.lockChat(id)
		done := s.catchUpChat(ctx, id, st)
		if done {
			s.seqsMu.Lock()
			delete(s.behind, id)
			s.seqsMu.Unlock()
		}
		s.unlockChat(id, st)
	}
}

// catchUpChat is catchUp for one chat, under its lock; it reports whether both streams are fully
// published.
func (s *Service) catchUpChat(ctx context.Context, chatID string, st *chatLock) bool {
	chat, err := s.store.Chat(ctx, chatID)
	if cell.ErrorCode(err) == cell.ENotFound {
		return true
	}
	if err != nil {
		return false
	}
	done := true
	for _, private := range []bool{false, true} {
		sq := st.stream(private)
		if !sq.pubKnown {
			continue
		}
		sq.loaded = false
		if err := s.loadStream(ctx, chat, sq, private); err != nil {
			done = false
			continue
		}
		done = s.publishStored(ctx, &chat, sq, private, nil) && done
	}
	return done
}

// lastSeqOf returns the highest stored seq of the chat's messages (private false) or notes
// (private true): the chat's recorded lastSeq hint, then probing upward by point reads for seqs
// stored after it (the hint is written at most every HintEvery, and another process may have
// appended). Notes have no hint, so their probe starts at 0 (notes are few).
func (s *Service) lastSeqOf(ctx context.Context, chat cell.Chat, private bool) (int64, error) {
	var last int64
	if !private {
		fresh, err := s.store.Chat(ctx, chat.ID)
		if err != nil {
			return 0, err
		}
		last = fresh.LastSeq
	}
	for {
		ok, err := s.store.HasMessageSeq(ctx, chat.ID, last+1, private)
		if err != nil {
			return 0, err
		}
		if !ok {
			return last, nil
		}
		last++
	}
}

// lockChat returns the chat's lock, locked; release it with unlockChat.
func (s *Service) lockChat(chatID string) *chatLock {
	s.seqsMu.Lock()
	st := s.seqs[chatID]
	if st == nil {
		st = &chatLock{gen: s.genSeq.Add(1)}
		s.seqs[chatID] = st
	}
	st.refs++
	s.seqsMu.Unlock()
	st.mu.Lock()
	return st
}

// chatGen returns the chat's lock generation (0 when this process holds no entry for it). It
// changes whenever this process writes the chat (bumpGen), and a new entry never reuses one.
func (s *Service) chatGen(chatID string) int64 {
	s.seqsMu.Lock()
	defer s.seqsMu.Unlock()
	if st := s.seqs[chatID]; st != nil {
		return st.gen
	}
	return 0
}

// bumpGen marks, under the chat's lock, that this process wrote the chat.
func (s *Service) bumpGen(st *chatLock) {
	g := s.genSeq.Add(1)
	s.seqsMu.Lock()
	st.gen = g
	s.seqsMu.Unlock()
}

// unlockChat releases a lock taken with lockChat. The entry of a closed chat is dropped once
// nobody holds or waits for it, so the map holds at most the open chats and those in use.
func (s *Service) unlockChat(chatID string, st *chatLock) {
	st.mu.Unlock()
	s.seqsMu.Lock()
	st.refs--
	if st.refs == 0 && st.closed {
		delete(s.seqs, chatID)
	}
	s.seqsMu.Unlock()
}

func preview(m *cell.Message) string {
	if m.Body == "" && m.Attachment != nil {
		return "📎 " + m.Attachment.Filename
	}
	r := []rune(m.Body)
	if len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return m.Body
}

// History is one page of a chat's messages in seq order. Complete is true when no message after
// the page exists (at the time of reading); LastSeq is the chat's newest seq.
type History struct {
	Messages []cell.Message `json:"messages"`
	Complete bool           `json:"complete"`
	LastSeq  int64          `json:"lastSeq"`
}

// History returns up to limit messages with seq > since (limit ≤ MaxHistoryPage; 0 means
// DefaultHistoryPage).
func (s *Service) History(ctx context.Context, p cell.Principal, chatID string, since int64, limit int) (History, error) {
	return s.page(ctx, p, chatID, since, limit, false)
}

// page reads one page of the chat's messages (private false) or notes (private true).
func (s *Service) page(ctx context.Context, p cell.Principal, chatID string, since int64, limit int, private bool) (History, error) {
	if since < 0 || limit < 0 || limit > MaxHistoryPage {
		return History{}, cell.Errorf(cell.EInvalid, "since must be ≥ 0 and limit between 1 and %d", MaxHistoryPage)
	}
	if limit == 0 {
		limit = DefaultHistoryPage
	}
	chat, err := s.Chat(ctx, p, chatID)
	if err != nil {
		return History{}, err
	}
	last, err := s.lastSeqOf(ctx, chat, private)
	if err != nil {
		return History{}, err
	}
	upTo := last
	if since < last && last-since > int64(limit) { // written so since+limit cannot overflow
		upTo = since + int64(limit)
	}
	msgs := []cell.Message{}
	if upTo > since {
		if msgs, err = s.store.MessagesInRange(ctx, chat.ID, since, upTo, private); err != nil {
			return History{}, err
		}
	}
	return History{Messages: msgs, Complete: upTo >= last, LastSeq: last}, nil
}

// lastNote is a chat's newest seq, preview and message time waiting to be written to the chat
// document.
type lastNote struct {
	seq     int64
	preview string
	at      time.Time
}

// FlushInterval is the period of the flush tick: it publishes stored messages left unpublished
// (catchUp) and writes the lastSeq and preview hints that are due (HintEvery).
const FlushInterval = 100 * time.Millisecond

// noteLast records a chat's newest message for the next flush. The chat document's lastSeq is a
// hint (lastSeq() probes past it by point reads), so writing it once per interval instead of once
// per message saves an update on every send without weakening anything.
func (s *Service) noteLast(chatID string, seq int64, preview string, at time.Time) {
	s.lastMu.Lock()
	if prev, ok := s.last[chatID]; !ok || prev.seq < seq {
		s.last[chatID] = lastNote{seq: seq, preview: preview, at: at}
	}
	s.lastMu.Unlock()
}

// withLast overlays the newest noted (not yet flushed) seq and preview on c.
func (s *Service) withLast(c cell.Chat) cell.Chat {
	s.lastMu.Lock()
	n, ok := s.last[c.ID]
	s.lastMu.Unlock()
	if ok && n.seq > c.LastSeq {
		c.LastSeq, c.Preview = n.seq, n.preview
		if n.at.After(c.LastActivityAt) {
			c.LastActivityAt = n.at
		}
	}
	return c
}

// withLastAll applies withLast to every chat of a list.
func (s *Service) withLastAll(chats []cell.Chat) []cell.Chat {
	for i := range chats {
		chats[i] = s.withLast(chats[i])
	}
	return chats
}

// HintEvery is the least time between two writes of one chat's lastSeq/preview hint (5 s). A busy
// chat's hint is written at most this often instead of on every flush tick: at 1,000 chats each
// writing 1 message/s that is 200 chat updates/s instead of 1,000, and FerretDB v1 applies an
// update as a read-modify-write of the whole chat. The hint only shortens lastSeq's probe (one
// point read per seq past it) and feeds other replicas' chat lists; this process overlays its
// newer hints (withLast).
const HintEvery = 5 * time.Second

// flushLast writes the noted lastSeq/preview hints of the chats whose hint was last written at
// least HintEvery ago (all of them with force); failures are logged and retried next time. A hint
// stays readable (withLast) until its write is done, so no reader sees the stored value fall
// behind while a flush is in flight.
func (s *Service) flushLast(ctx context.Context, force bool) {
	now := time.Now()
	s.lastMu.Lock()
	batch := make(map[string]lastNote, len(s.last))
	for id, n := range s.last {
		if force || now.Sub(s.hintAt[id]) >= HintEvery {
			batch[id] = n
		}
	}
	for id, at := range s.hintAt {
		if _, pending := s.last[id]; !pending && now.Sub(at) >= HintEvery {
			delete(s.hintAt, id)
		}
	}
	s.lastMu.Unlock()
	for chatID, n := range batch {
		st := s.lockChat(chatID)
		err := s.store.RecordLastMessage(ctx, chatID, n.seq, n.preview, n.at)
		s.bumpGen(st) // even on error: the write may have happened
		if err != nil {
			s.log.Warn("chat lastSeq not recorded", "chatId", chatID, "error", err)
		} else {
			s.lastMu.Lock()
			if cur, ok := s.last[chatID]; ok && cur.seq <= n.seq {
				delete(s.last, chatID)
			}
			s.hintAt[chatID] = now
			s.lastMu.Unlock()
			s.dirActivity(chatID, n.at)
		}
		s.unlockChat(chatID, st)
	}
}

// FlushHints writes every chat's pending lastSeq/preview hint now (tests, and before a planned
// stop; the cell also writes them on its own, see HintEvery).
func (s *Service) FlushHints(ctx context.Context) { s.flushLast(ctx, true) }

// afterMessage records, under the chat's lock, what a message changes on the chat besides its
// seq: the first response time (the first agent message after an accept).
func (s *Service) afterMessage(ctx context.Context, chat *cell.Chat, msg *cell.Message) {
	if msg.From.Role == cell.RoleVisitor || chat.FirstResponseAt != nil || chat.AcceptedAt == nil {
		return
	}
	at := msg.CreatedAt
	chat.FirstResponseAt = &at
	err := s.store.ReplaceChat(ctx, chat)
	s.seqsMu.Lock()
	if st := s.seqs[chat.ID]; st != nil { // held by the caller
		st.gen = s.genSeq.Add(1)
	}
	s.seqsMu.Unlock()
	if err != nil {
		s.log.Warn("first response time not recorded", "chatId", chat.ID, "error", err)
	}
}

// Run writes the chats' lastSeq hints every FlushInterval, runs routing passes and the timers,
// until ctx ends; then it flushes once more.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go s.routeLoop(ctx, &wg)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	timers := time.NewTicker(timerEvery)
	defer timers.Stop()
	for {
		select {
		case <-t.C:
			s.catchUp(ctx)
			s.flushLast(ctx, false)
		case <-timers.C:
			s.sweepTimers(ctx)
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.flushLast(flushCtx, true)
			cancel()
			wg.Wait()
			return
		}
	}
}
