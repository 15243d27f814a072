package app

import (
	"context"
	"net/http"

	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/notify"
	"github.com/prereg/prereg/postgres"
)

// notifyAdminRoutes are the notify stage's routes on the admin side: the
// operator's resend, and (mounted directly, not a bearer-token route) the
// gateway's delivery-report webhook, which is authenticated by the
// gateway's HMAC signature instead.
func (s *System) notifyAdminRoutes(ctx context.Context) ([]httpapi.AdminRoute, error) {
	store := &postgres.OutboxStore{Pool: s.pool}
	log := s.log.With("role", string(RoleAdmin))
	if len(s.opts.Notify.WebhookSecret) == 0 {
		log.Warn("no PREREG_SMS_SECRET: delivery reports will be refused")
	}
	s.admin.Handle("POST /v1/sms/reports", notify.ReportHandler(store, s.opts.Notify.WebhookSecret, s.now, log))
	return []httpapi.AdminRoute{
		{Pattern: "POST /admin/v1/outbox/resend", Action: "outbox.resend", Roles: []config.Role{config.RoleOperator},
			Handler: notify.ResendHandler(store, func(r *http.Request) string {
				return "admin:" + string(httpapi.RoleFrom(r.Context()))
			}, log)},
	}, nil
}
