package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prereg/prereg"
	"github.com/prereg/prereg/deadletter"
)

// DeadLetterStore is the table dead_letters: the port through which verify
// and dedupe record a message before terminating it, and deadletter.Store
// for listing and re-driving.
type DeadLetterStore struct {
	Pool *pgxpool.Pool
}

var _ deadletter.Store = (*DeadLetterStore)(nil)

// Record writes a letter. A message recorded before (a redelivery after a
// lost termination) is recorded once.
func (s *DeadLetterStore) Record(ctx context.Context, l deadletter.Letter) error {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO dead_letters (stream, subject, stream_seq, msg_id, reason, detail, payload, payload_sha256, payload_len, first_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (stream, stream_seq) DO NOTHING`,
		l.Stream, l.Subject, int64(l.StreamSeq), l.MsgID, l.Reason, l.Detail, l.Payload, l.PayloadSHA256, l.PayloadLen, l.FirstSeenAt)
	if err != nil {
		return fmt.Errorf("record dead letter: %w", err)
	}
	return nil
}

const deadLetterColumns = `id, stream, subject, stream_seq, msg_id, reason, detail, payload, payload_sha256, payload_len, first_seen_at, redriven_at`

func scanDeadLetter(r pgx.CollectableRow) (deadletter.Letter, error) {
	var l deadletter.Letter
	var seq int64
	err := r.Scan(&l.ID, &l.Stream, &l.Subject, &seq, &l.MsgID, &l.Reason, &l.Detail, &l.Payload, &l.PayloadSHA256, &l.PayloadLen, &l.FirstSeenAt, &l.RedrivenAt)
	l.StreamSeq = uint64(seq)
	l.FirstSeenAt = l.FirstSeenAt.UTC()
	return l, err
}

// List returns up to limit letters, newest first; streamName, when set,
// keeps only that stream's.
func (s *DeadLetterStore) List(ctx context.Context, streamName string, limit int) ([]deadletter.Letter, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM dead_letters
		WHERE ($1 = '' OR stream = $1) ORDER BY id DESC LIMIT $2`, streamName, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Get returns one letter; prereg.ErrNotFound when there is none.
func (s *DeadLetterStore) Get(ctx context.Context, id int64) (deadletter.Letter, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = $1`, id)
	if err != nil {
		return deadletter.Letter{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return deadletter.Letter{}, prereg.NotFound(fmt.Sprintf("dead letter %d not found", id))
	}
	if err != nil {
		return deadletter.Letter{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return l, nil
}

// MarkRedriven sets a letter's redriven_at, once.
func (s *DeadLetterStore) MarkRedriven(ctx context.Context, id int64, at time.Time) error {
	tag, err := s.Pool.Exec(ctx, `UPDATE dead_letters SET redriven_at = $2 WHERE id = $1 AND redriven_at IS NULL`, id, at)
	if err != nil {
		return fmt.Errorf("mark dead letter %d re-driven: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return prereg.Conflict(fmt.Sprintf("dead letter %d is unknown or was re-driven already", id))
	}
	return nil
}
