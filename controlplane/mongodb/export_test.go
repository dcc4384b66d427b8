package mongodb

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// SetBeforeSave installs f between the event write and the tenant write of s.SaveTenant (a crash
// point for tests).
func SetBeforeSave(s *Store, f func(tenantID string) error) { s.beforeSave = f }

// InsertLegacyEvent stores an event the way the store did before events were chained: an
// ObjectID _id, no nonce, no link.
func InsertLegacyEvent(ctx context.Context, s *Store, tenantID string, seq int64, from, to string) error {
	_, err := s.events.InsertOne(ctx, bson.D{{Key: "tenantId", Value: tenantID}, {Key: "seq", Value: seq},
		{Key: "from", Value: from}, {Key: "to", Value: to}, {Key: "at", Value: bson.NewDateTimeFromTime(time.Now())}})
	return err
}

// UnchainTenant removes the event-chain fields of a stored tenant, as stored before chaining.
func UnchainTenant(ctx context.Context, s *Store, tenantID string) error {
	_, err := s.tenants.UpdateOne(ctx, bson.D{{Key: "_id", Value: tenantID}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "lastEventSeq", Value: ""}, {Key: "lastEventNonce", Value: ""}}}})
	return err
}

// DropEvents deletes every stored event of tenantID.
func DropEvents(ctx context.Context, s *Store, tenantID string) error {
	_, err := s.events.DeleteMany(ctx, bson.D{{Key: "tenantId", Value: tenantID}})
	return err
}
