package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/config"
	"github.com/prereg/prereg/deadletter"
	"github.com/prereg/prereg/httpapi"
	"github.com/prereg/prereg/postgres"
	"github.com/prereg/prereg/stream"
)

// deadLetterAdminRoutes are the dead letters' admin routes
// (docs/STREAMS.md, "Dead letters"): the list (operator, auditor) and the
// operator's re-drive of a verified-stream entry.
func (s *System) deadLetterAdminRoutes(context.Context) ([]httpapi.AdminRoute, error) {
	store := &postgres.DeadLetterStore{Pool: s.pool}
	log := s.log.With("role", string(RoleAdmin))
	return []httpapi.AdminRoute{
		{Pattern: "GET /admin/v1/deadletters", Roles: []config.Role{config.RoleOperator, config.RoleAuditor}, Handler: serveDeadLetters(store)},
		{Pattern: "POST /admin/v1/deadletters/{id}/redrive", Action: "deadletter.redrive", Roles: []config.Role{config.RoleOperator},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
				if err != nil || id < 1 {
					httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"id": "want a dead letter id"}})
					return
				}
				l, err := deadletter.Redrive(r.Context(), store, s.js, id, s.now())
				if err != nil {
					var extra map[string]any
					var perr *prereg.Error
					if errors.As(err, &perr) {
						// Its text is the refusal's reason alone: no
						// personal data, meant for the operator.
						extra = map[string]any{"detail": perr.Message}
					}
					if httpapi.Fail(w, err, extra) == httpapi.CodeInternal {
						log.Error("dead letter re-drive", slog.Int64("id", id), slog.Any("err", err))
					}
					return
				}
				httpapi.WriteJSON(w, http.StatusOK, l)
			})},
	}, nil
}

// serveDeadLetters answers GET /admin/v1/deadletters?stream=&limit=: the
// dead letters, newest first, without payloads.
func serveDeadLetters(store *postgres.DeadLetterStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		name := q.Get("stream")
		if name != "" && name != stream.Submitted && name != stream.Verified {
			httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"stream": "want " + stream.Submitted + " or " + stream.Verified}})
			return
		}
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				httpapi.WriteError(w, httpapi.CodeInvalid, map[string]any{"fields": map[string]string{"limit": "want 1 to 1000"}})
				return
			}
			limit = n
		}
		letters, err := store.List(r.Context(), name, limit)
		if err != nil {
			httpapi.Fail(w, err, nil)
			return
		}
		if letters == nil {
			letters = []deadletter.Letter{}
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"dead_letters": letters})
	})
}
