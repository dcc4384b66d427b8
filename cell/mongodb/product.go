package mongodb

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"atende/cell"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ReplaceChat writes c over the stored chat with the same _id (a point write). Callers hold the
// chat's lock and re-read it under that lock first: FerretDB v1 applies every update as a
// read-modify-write of the whole document anyway, so a replace is no weaker than $set.
func (s *Store) ReplaceChat(ctx context.Context, c *cell.Chat) error {
	c.TenantID = s.tenantID
	res, err := s.chats.ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.ID}}, c)
	if err != nil {
		return translate(err, "chat")
	}
	if res.MatchedCount == 0 {
		return cell.Errorf(cell.ENotFound, "chat not found")
	}
	return nil
}

// AllChats returns every chat of the tenant, oldest first. FerretDB v1 scans for any filter but
// `_id`, so the callers (queue, reports, timers) filter in Go over one scan.
func (s *Store) AllChats(ctx context.Context) ([]cell.Chat, error) {
	chats, err := findAll[cell.Chat](ctx, s, s.chats, "chats")
	sort.Slice(chats, func(i, j int) bool { return chats[i].CreatedAt.Before(chats[j].CreatedAt) })
	return chats, err
}

// ChatsCreatedBetween returns the chats created in [from, to), oldest first (reports). The
// filter is tenantId first, then createdAt; real MongoDB uses the {tenantId, status, createdAt}
// prefix, FerretDB scans.
func (s *Store) ChatsCreatedBetween(ctx context.Context, from, to time.Time) ([]cell.Chat, error) {
	chats, err := findAll[cell.Chat](ctx, s, s.chats, "chats",
		bson.E{Key: "createdAt", Value: bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}})
	sort.Slice(chats, func(i, j int) bool { return chats[i].CreatedAt.Before(chats[j].CreatedAt) })
	return chats, err
}

// SetVisitorLastChat records chatID as the visitor's newest chat.
func (s *Store) SetVisitorLastChat(ctx context.Context, visitorID, chatID string) error {
	return s.update(ctx, s.visitors, visitorID, bson.D{{Key: "$set", Value: bson.D{{Key: "lastChatId", Value: chatID}}}}, "visitor")
}

// SetUserRouting replaces the agent's departments and capacity.
func (s *Store) SetUserRouting(ctx context.Context, id string, departments []string, capacity int) error {
	return s.update(ctx, s.users, id, bson.D{{Key: "$set", Value: bson.D{
		{Key: "departments", Value: departments}, {Key: "capacity", Value: capacity}}}}, "user")
}

// Release deletes the claim id if holder still holds it (a point delete by _id; the holder is
// checked on the document read first). Releasing a missing claim succeeds.
func (s *Store) Release(ctx context.Context, id, holder string) error {
	var doc struct {
		Holder string `bson:"holder"`
	}
	err := s.get(ctx, s.claims, id, &doc, "claim")
	if cell.ErrorCode(err) == cell.ENotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if doc.Holder != holder {
		return nil
	}
	_, err = s.claims.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return translate(err, "claim")
}

// Slot is one unit of an agent's capacity held for one chat.
type Slot struct {
	ID     string    `bson:"_id"`
	ChatID string    `bson:"holder"`
	At     time.Time `bson:"at"`
}

// SlotID returns the _id of the agent's capacity slot k: "slot:<agentId>:<k>".
func SlotID(agentID string, k int) string { return fmt.Sprintf("slot:%s:%d", agentID, k) }

// ClaimSlot takes one free capacity slot of the agent for chatID: it inserts the first of
// SlotID(agent, 0 … capacity-1) that does not exist, so across any number of processes an agent
// never holds more than capacity slots (each slot is a unique _id). It returns the slot id, or
// a conflict *Error when all are taken. A slot already held for chatID is returned as is.
func (s *Store) ClaimSlot(ctx context.Context, agentID string, capacity int, chatID string) (string, error) {
	for k := 0; k < capacity; k++ {
		id := SlotID(agentID, k)
		holder, _, err := s.Claim(ctx, id, chatID)
		if err != nil {
			return "", err
		}
		if holder == chatID {
			return id, nil
		}
	}
	return "", cell.Errorf(cell.EConflict, "the agent is at capacity (%d active chats)", capacity)
}

// AgentSlots returns the slots the agent holds, among SlotID(agent, 0 … upTo-1), by point reads.
func (s *Store) AgentSlots(ctx context.Context, agentID string, upTo int) ([]Slot, error) {
	var out []Slot
	for k := 0; k < upTo; k++ {
		var sl Slot
		err := s.get(ctx, s.claims, SlotID(agentID, k), &sl, "slot")
		if cell.ErrorCode(err) == cell.ENotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sl)
	}
	return out, nil
}

// CreateDepartment stores d; a second department with the same name is a conflict.
func (s *Store) CreateDepartment(ctx context.Context, d *cell.Department) error {
	d.TenantID = s.tenantID
	holder, _, err := s.Claim(ctx, "department-name:"+strings.ToLower(d.Name), d.ID)
	if err != nil {
		return err
	}
	if holder != d.ID {
		return cell.Errorf(cell.EConflict, "a department named %q already exists", d.Name)
	}
	err = s.insert(ctx, s.departments, d, "department")
	if err != nil {
		_ = s.Release(ctx, "department-name:"+strings.ToLower(d.Name), d.ID)
	}
	return err
}

// Department returns the department with id, or not_found.
func (s *Store) Department(ctx context.Context, id string) (cell.Department, error) {
	var d cell.Department
	err := s.get(ctx, s.departments, id, &d, "department")
	return d, err
}

// Departments returns the tenant's departments by name.
func (s *Store) Departments(ctx context.Context) ([]cell.Department, error) {
	ds, err := findAll[cell.Department](ctx, s, s.departments, "departments")
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds, err
}

// DeleteDepartment removes the department with id (not_found if missing).
func (s *Store) DeleteDepartment(ctx context.Context, id string) error {
	d, err := s.Department(ctx, id)
	if err != nil {
		return err
	}
	if _, err := s.departments.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return translate(err, "department")
	}
	return s.Release(ctx, "department-name:"+strings.ToLower(d.Name), d.ID)
}

// Settings returns the tenant's stored settings, normalised; a tenant that never saved any gets
// the defaults.
func (s *Store) Settings(ctx context.Context) (cell.Settings, error) {
	var st cell.Settings
	err := s.get(ctx, s.settings, settingsID, &st, "settings")
	if cell.ErrorCode(err) == cell.ENotFound {
		st, err = cell.Settings{}, nil
	}
	if err != nil {
		return cell.Settings{}, err
	}
	if nerr := st.Normalize(); nerr != nil {
		return cell.Settings{}, fmt.Errorf("mongodb: stored settings are invalid: %w", nerr)
	}
	return st, nil
}

// settingsID is the _id of the settings document.
const settingsID = "settings:" + cell.SettingsKey

// SaveSettings replaces the tenant's settings (an upsert by _id).
func (s *Store) SaveSettings(ctx context.Context, st *cell.Settings) error {
	st.TenantID = s.tenantID
	st.Key = cell.SettingsKey
	doc, err := bson.Marshal(st)
	if err != nil {
		return err
	}
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil {
		return err
	}
	d = append(bson.D{{Key: "_id", Value: settingsID}}, d...)
	_, err = s.settings.ReplaceOne(ctx, bson.D{{Key: "_id", Value: settingsID}}, d, optsUpsert())
	return translate(err, "settings")
}

// CreateCanned stores c (c.ID set by the caller, random); a second canned response with the
// same shortcut is a conflict (a claim on the shortcut arbitrates).
func (s *Store) CreateCanned(ctx context.Context, c *cell.CannedResponse) error {
	c.TenantID = s.tenantID
	holder, _, err := s.Claim(ctx, "canned-shortcut:"+c.Shortcut, c.ID)
	if err != nil {
		return err
	}
	if holder != c.ID {
		return cell.Errorf(cell.EConflict, "a canned response with shortcut %q already exists", c.Shortcut)
	}
	if err := s.insert(ctx, s.canned, c, "canned response"); err != nil {
		_ = s.Release(ctx, "canned-shortcut:"+c.Shortcut, c.ID)
		return err
	}
	return nil
}

// CannedResponses returns the tenant's canned responses by shortcut.
func (s *Store) CannedResponses(ctx context.Context) ([]cell.CannedResponse, error) {
	cs, err := findAll[cell.CannedResponse](ctx, s, s.canned, "canned responses")
	sort.Slice(cs, func(i, j int) bool { return cs[i].Shortcut < cs[j].Shortcut })
	return cs, err
}

// DeleteCanned removes the canned response with id (not_found if missing).
func (s *Store) DeleteCanned(ctx context.Context, id string) error {
	var c cell.CannedResponse
	if err := s.get(ctx, s.canned, id, &c, "canned response"); err != nil {
		return err
	}
	if _, err := s.canned.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return translate(err, "canned response")
	}
	return s.Release(ctx, "canned-shortcut:"+c.Shortcut, c.ID)
}

// InsertOfflineMessage stores m.
func (s *Store) InsertOfflineMessage(ctx context.Context, m *cell.OfflineMessage) error {
	m.TenantID = s.tenantID
	return s.insert(ctx, s.offline, m, "offline message")
}

// OfflineMessages returns the tenant's offline messages, newest first, at most limit.
func (s *Store) OfflineMessages(ctx context.Context, limit int) ([]cell.OfflineMessage, error) {
	ms, err := findAll[cell.OfflineMessage](ctx, s, s.offline, "offline messages")
	sort.Slice(ms, func(i, j int) bool { return ms[i].CreatedAt.After(ms[j].CreatedAt) })
	if len(ms) > limit {
		ms = ms[:limit]
	}
	return ms, err
}

func optsUpsert() *options.ReplaceOptionsBuilder { return options.Replace().SetUpsert(true) }

// ClaimInfo returns the holder of claim id and when it was taken, or not_found.
func (s *Store) ClaimInfo(ctx context.Context, id string) (holder string, at time.Time, err error) {
	var doc struct {
		Holder string    `bson:"holder"`
		At     time.Time `bson:"at"`
	}
	if err := s.get(ctx, s.claims, id, &doc, "claim"); err != nil {
		return "", time.Time{}, err
	}
	return doc.Holder, doc.At, nil
}
