package httpapi

import (
	"context"

	"github.com/prereg/prereg/config"
)

type roleKey struct{}

func withRole(ctx context.Context, r config.Role) context.Context {
	return context.WithValue(ctx, roleKey{}, r)
}

// RoleFrom is the admin role of an authenticated request ("" when none):
// what reviews and resends record as who did them.
func RoleFrom(ctx context.Context) config.Role {
	r, _ := ctx.Value(roleKey{}).(config.Role)
	return r
}
