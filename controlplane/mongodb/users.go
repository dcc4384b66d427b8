package mongodb

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"atende/controlplane"
)

// Server error codes TenantUsers interprets (MongoDB's src/mongo/base/error_codes.yml).
const (
	codeUserNotFound    = 11
	codeCommandNotFound = 59
	codeDuplicateKey    = 11000
	codeUserExists      = 51003
)

// TenantUsers manages the database users of shared-tier tenants on the shared server (one user
// per tenant, defined on and allowed readWrite on the tenant's database only). It implements
// supervisor.DatabaseUsers. The connection must be allowed to manage users (e.g. MongoDB's root
// or userAdminAnyDatabase). FerretDB v1 has no users: it answers createUser, updateUser and
// dropUser with CommandNotFound (code 59, measured on 1.24), which EnsureTenantUser reports as
// controlplane.ErrDatabaseUsersUnsupported.
type TenantUsers struct {
	// Client is connected to the server holding the tenants' databases.
	Client *mongo.Client
}

// EnsureTenantUser creates user on database db with password and the single role readWrite on
// db (createUser) or, if the user exists, sets that password and role (updateUser), so a retry
// after a crash converges. Errors: one wrapping controlplane.ErrDatabaseUsersUnsupported when the
// server does not know the commands, the server's others.
func (u TenantUsers) EnsureTenantUser(ctx context.Context, db, user, password string) error {
	roles := bson.A{bson.D{{Key: "role", Value: "readWrite"}, {Key: "db", Value: db}}}
	err := u.Client.Database(db).RunCommand(ctx, bson.D{
		{Key: "createUser", Value: user}, {Key: "pwd", Value: password}, {Key: "roles", Value: roles},
	}).Err()
	if hasCode(err, codeUserExists, codeDuplicateKey) {
		err = u.Client.Database(db).RunCommand(ctx, bson.D{
			{Key: "updateUser", Value: user}, {Key: "pwd", Value: password}, {Key: "roles", Value: roles},
		}).Err()
	}
	switch {
	case err == nil:
		return nil
	case hasCode(err, codeCommandNotFound):
		return fmt.Errorf("mongodb: create user %s: %w (%v)", user, controlplane.ErrDatabaseUsersUnsupported, err)
	default:
		return fmt.Errorf("mongodb: create user %s on %s: %w", user, db, err)
	}
}

// DropTenantUser drops user from database db. A missing user, or a server without users, is
// success.
func (u TenantUsers) DropTenantUser(ctx context.Context, db, user string) error {
	err := u.Client.Database(db).RunCommand(ctx, bson.D{{Key: "dropUser", Value: user}}).Err()
	if err == nil || hasCode(err, codeUserNotFound, codeCommandNotFound) {
		return nil
	}
	return fmt.Errorf("mongodb: drop user %s on %s: %w", user, db, err)
}

// hasCode reports whether err is a server command error with one of codes.
func hasCode(err error, codes ...int32) bool {
	var ce mongo.CommandError
	if !errors.As(err, &ce) {
		return false
	}
	for _, c := range codes {
		if ce.Code == c {
			return true
		}
	}
	return false
}
