package config

import (
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"
)

// Role is what an admin token may do.
type Role string

// The admin roles of docs/DESIGN.md, "Data protection".
const (
	RoleOperator Role = "operator" // allocate, resend, release held, campaign load
	RoleAuditor  Role = "auditor"  // reports, read only
)

// AdminTokens maps bearer tokens to roles.
type AdminTokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	role  Role
	token []byte
}

// ParseAdminTokens parses "role:token,role:token".
func ParseAdminTokens(s string) (*AdminTokens, error) {
	t := &AdminTokens{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, token, ok := strings.Cut(part, ":")
		if !ok || token == "" {
			return nil, fmt.Errorf("want role:token pairs separated by commas")
		}
		r := Role(role)
		if r != RoleOperator && r != RoleAuditor {
			return nil, fmt.Errorf("unknown role %q (want operator or auditor)", role)
		}
		if len(token) < 16 {
			return nil, fmt.Errorf("a %s token is shorter than 16 characters", role)
		}
		t.entries = append(t.entries, tokenEntry{role: r, token: []byte(token)})
	}
	return t, nil
}

// Role returns the role of a bearer token. Every entry is compared, in
// constant time, so the answer's timing says nothing about which matched.
func (t *AdminTokens) Role(token string) (Role, bool) {
	r, _, ok := t.Lookup(token)
	return r, ok
}

// Lookup returns a bearer token's role and label: the role and the
// token's place among that role's tokens in PREREG_ADMIN_TOKENS
// ("operator-2"), a name that says which token acted without revealing
// it. Every entry is compared, in constant time.
func (t *AdminTokens) Lookup(token string) (Role, string, bool) {
	var found Role
	var label string
	seen := map[Role]int{}
	for _, e := range t.entries {
		seen[e.role]++
		if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
			found, label = e.role, string(e.role)+"-"+strconv.Itoa(seen[e.role])
		}
	}
	return found, label, found != ""
}

// Tokens lists role:token pairs, for `prereg dev` to print the tokens it
// made.
func (t *AdminTokens) Tokens() []string {
	var out []string
	for _, e := range t.entries {
		out = append(out, string(e.role)+":"+string(e.token))
	}
	return out
}

// String is the env form, role:token,role:token.
func (t *AdminTokens) String() string { return strings.Join(t.Tokens(), ",") }
