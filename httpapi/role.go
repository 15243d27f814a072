package httpapi

import (
	"context"

	"github.com/prereg/prereg/config"
)

type roleKey struct{}

type caller struct {
	role    config.Role
	tokenID string
}

func withRole(ctx context.Context, r config.Role, tokenID string) context.Context {
	return context.WithValue(ctx, roleKey{}, caller{role: r, tokenID: tokenID})
}

// RoleFrom is the admin role of an authenticated request ("" when none):
// what reviews and resends record as who did them.
func RoleFrom(ctx context.Context) config.Role {
	c, _ := ctx.Value(roleKey{}).(caller)
	return c.role
}

// TokenIDFrom is the id of the token that authenticated a request ("" when
// none): a name for the token that the audit log may keep, never the
// token.
func TokenIDFrom(ctx context.Context) string {
	c, _ := ctx.Value(roleKey{}).(caller)
	return c.tokenID
}
