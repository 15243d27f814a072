package app

import (
	"context"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/dedupe"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
)

// receiptAdminRoutes are the auditor's view of one receipt: what became
// of a submission, from its decision to its SMS, pseudonymous only
// (dedupe.ReceiptView), as JSON or as a page in the report's style.
func (s *System) receiptAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	return []httpapi.AdminRoute{
		{Pattern: "GET /admin/v1/receipts/{receipt}", Roles: []config.Role{config.RoleAuditor, config.RoleOperator},
			Handler: dedupe.ReceiptHandler(&postgres.DedupeStore{Pool: s.pool}, s.log.With("role", string(RoleAdmin)))},
	}, nil
}
