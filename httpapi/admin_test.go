package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
)

// A route table cannot declare a change that auditors may make, or a
// change without an audit action: Mount refuses both at start.
func TestAdminMountRefusesUnsafeRoutes(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, tc := range []struct {
		name  string
		route httpapi.AdminRoute
	}{
		{"auditor on a change", httpapi.AdminRoute{Pattern: "POST /admin/v1/x", Action: "x", Roles: []config.Role{config.RoleAuditor}, Handler: ok}},
		{"change without an action", httpapi.AdminRoute{Pattern: "DELETE /admin/v1/x", Roles: []config.Role{config.RoleOperator}, Handler: ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &httpapi.Admin{}
			require.Panics(t, func() { a.Mount(http.NewServeMux(), tc.route) })
			require.Empty(t, a.Routes())
		})
	}
	a := &httpapi.Admin{}
	a.Mount(http.NewServeMux(), httpapi.AdminRoute{Pattern: "GET /admin/v1/x", Roles: []config.Role{config.RoleAuditor, config.RoleOperator}, Handler: ok})
	require.Len(t, a.Routes(), 1)
}
