// Package config reads prereg's whole configuration from the environment,
// in one place: the table Settings lists every variable (name, default,
// meaning, whether it is a secret, how it parses), FromEnv reads and
// validates them into a typed Config, Config.Log prints them with secrets
// redacted, and the README's configuration table is generated from the
// same rows (Markdown; a test fails when the two differ).
//
// Every secret may also be given as NAME_FILE, the path of a file holding
// the value (container secrets, as in miniflux); setting both is an error.
// Errors name the variable and never repeat a secret's value.
//
// Adding a variable is adding a row to settings and a field to Config,
// then regenerating the README table (go test ./config -run README -update).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prereg/prereg/keys"
)

// Config is the environment's part of the configuration, typed and
// validated; flags add the rest.
type Config struct {
	// DatabaseURL is the PostgreSQL server: "" the local server (else a
	// private cluster), "private" forces the private cluster.
	DatabaseURL string
	// NatsURL is the NATS server; "" embeds one (demo, dev, bench only).
	NatsURL     string
	HMACKeys    []keys.Key
	EncKeys     []keys.Key
	AdminTokens *AdminTokens
	// TrustedProxies are the load balancers whose X-Forwarded-For names
	// the client, for the per-address limit.
	TrustedProxies []netip.Prefix
	// IPv6Prefix is the IPv6 prefix length one client is limited as
	// (0: intake's default, /64).
	IPv6Prefix int
	// GroupCommit publishes intents that arrive together as one atomic
	// batch, and declares the submitted stream to take them.
	GroupCommit bool
	Dedupe      Dedupe
	Verify      Verify
	SMS         SMS
	GC          GC
	// Stream are the streams' replicas, ages, storage bound and duplicate
	// windows; zero fields keep stream's defaults.
	Stream Stream
	// PurgeRetention is how long after a campaign's last activity its
	// personal data is kept before `campaign purge` may remove it.
	PurgeRetention time.Duration

	// Generated lists the secrets FromEnv made up for this process
	// (demo and dev only).
	Generated []string
	// Production is true outside demo and dev (FromEnv with
	// requireSecrets): the rules for keys and outside URLs are strict.
	Production bool

	// shown is each setting's value as Log prints it, secrets redacted.
	shown map[string]string
}

// Dedupe are the dedupe role's settings.
type Dedupe struct {
	Shards    []int // nil: every shard
	Workers   int   // 0: one
	BatchSize int   // 0: the default
	// AckWait is how long an outcome may go unacknowledged before
	// JetStream delivers it again (0: the default).
	AckWait time.Duration
}

// Verify are the verify role's guards on the identity provider's spend
// (zero: verify's defaults).
type Verify struct {
	CallsPerPrefix   int     // provider calls per address prefix per minute
	CallsPerCampaign float64 // provider calls per campaign per second
	// AckWait is how long an intent may go unacknowledged before
	// JetStream delivers it again; it also bounds one intent's work (0:
	// the default).
	AckWait time.Duration
	// BackoffCap is the longest wait before an intent is tried again
	// after a failure (0: the default).
	BackoffCap time.Duration
}

// SMS are the SMS gateway's settings (notify and admin roles).
type SMS struct {
	URL         string
	Secret      []byte  // signs delivery reports
	Rate        float64 // messages per second; 0: the default; +Inf: none
	Concurrency int     // 0: the default
}

// GC is what the environment says of the Go collector. The runtime reads
// GOGC and GOMEMLIMIT itself; prereg only needs to know whether they are
// set, so that its own tuning (app.TuneGC) never overrides an operator.
type GC struct {
	GOGC       string
	GOMEMLIMIT string
}

// Getenv is os.Getenv's shape, injectable for tests.
type Getenv func(string) string

// Setting is one environment variable prereg reads.
type Setting struct {
	Name string
	// Default is what an unset variable means, for people (the README,
	// the start-up log); "" when the description says it.
	Default string
	// Description is the README's text.
	Description string
	// Secret settings read NAME or NAME_FILE and are never printed.
	Secret bool
	// URL settings may carry a password, which Log drops.
	URL bool
	// parse sets the Config from the trimmed value ("" when unset).
	parse func(c *Config, v string) error
}

// Settings lists every environment variable prereg reads, in the README's
// order.
func Settings() []Setting { return slices.Clone(settings) }

var settings = []Setting{
	{Name: "DATABASE_URL", URL: true,
		Description: "PostgreSQL. Unset: database `prereg` on the local server, else a private cluster; `private` forces the private cluster",
		parse:       func(c *Config, v string) error { c.DatabaseURL = v; return nil }},
	{Name: "NATS_URL", URL: true,
		Description: "NATS ≥ 2.10 with JetStream; required by `serve`. Unset: an embedded server (demo, dev, bench, tests only)",
		parse:       func(c *Config, v string) error { c.NatsURL = v; return nil }},
	{Name: "PREREG_HMAC_KEY", Secret: true,
		Description: "`id:base64` of ≥ 32 random bytes, keyed hashes of identities, devices, addresses, receipts. Comma-separated, current first: a campaign keeps the key it was loaded with, receipts check under every key (docs/SECURITY.md, \"Keys and rotation\"). `serve` refuses a short key, text, or the `dev`/`demo` keys",
		parse: func(c *Config, v string) (err error) {
			if v != "" {
				c.HMACKeys, err = keys.ParseKeys(v, 32)
			}
			return err
		}},
	{Name: "PREREG_ENC_KEY", Secret: true,
		Description: "`id:base64` of exactly 32 random bytes, AES-256-GCM for phones. Comma-separated, current first: the first seals, every key opens, and notify re-seals kept phones under the first. `serve` refuses text or the `dev`/`demo` keys",
		parse: func(c *Config, v string) (err error) {
			if v == "" {
				return nil
			}
			if c.EncKeys, err = keys.ParseKeys(v, 32); err != nil {
				return err
			}
			for _, k := range c.EncKeys {
				if len(k.Secret) != 32 {
					return fmt.Errorf("key %q: want exactly 32 bytes for AES-256, got %d", k.ID, len(k.Secret))
				}
			}
			return nil
		}},
	{Name: "PREREG_ADMIN_TOKENS", Secret: true,
		Description: "`role:token,…` with roles `operator` and `auditor`, tokens of at least 16 characters",
		parse: func(c *Config, v string) (err error) {
			c.AdminTokens, err = ParseAdminTokens(v)
			return err
		}},
	{Name: "PREREG_LOG_LEVEL", Default: "info",
		Description: "`debug`, `info`, `warn`, `error`",
		parse:       func(_ *Config, v string) error { _, err := ParseLogLevel(v); return err }}, // the logger exists before the Config: LogLevel
	{Name: "PREREG_LOG_FORMAT", Default: "text",
		Description: "`text` (key=value) or `json` (one object a line, for a log collector); the same attributes either way",
		parse:       func(_ *Config, v string) error { _, err := ParseLogFormat(v); return err }}, // the logger exists before the Config: NewLogger
	{Name: "PREREG_TRUSTED_PROXIES",
		Description: "CIDRs of the load balancers whose `X-Forwarded-For` names the client, for the per-address limit, e.g. `10.0.0.0/8,192.168.0.0/16`. Unset: the peer address counts",
		parse: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			for _, part := range strings.Split(v, ",") {
				p, err := netip.ParsePrefix(strings.TrimSpace(part))
				if err != nil {
					return fmt.Errorf("want CIDRs such as 10.0.0.0/8, got %q", part)
				}
				c.TrustedProxies = append(c.TrustedProxies, p)
			}
			return nil
		}},
	{Name: "PREREG_IPV6_PREFIX", Default: "64",
		Description: "how many leading bits of an IPv6 client address name one client for the per-address limits and the address hash verify limits by (IPv4 counts by address), 32 to 128",
		parse: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 32 || n > 128 {
				return fmt.Errorf("want a prefix length from 32 to 128, got %q", v)
			}
			c.IPv6Prefix = n
			return nil
		}},
	{Name: "PREREG_GROUP_COMMIT", Default: "false",
		Description: "`true`: intents that arrive together go out as one atomic batch, for a JetStream with `sync_interval: always`. Part of the submitted stream's declaration: set it alike on every process",
		parse: func(c *Config, v string) (err error) {
			if v == "" {
				return nil
			}
			if c.GroupCommit, err = strconv.ParseBool(v); err != nil {
				return fmt.Errorf("want true or false, got %q", v)
			}
			return nil
		}},
	{Name: "PREREG_DEDUPE_SHARDS", Default: "all",
		Description: "the dedupe shards this process owns, e.g. `0-7` or `0,2,4`; processes that split the shards list disjoint sets",
		parse: func(c *Config, v string) (err error) {
			c.Dedupe.Shards, err = ParseShards(v)
			return err
		}},
	{Name: "PREREG_DEDUPE_WORKERS", Default: "1",
		Description: "dedupe workers in the process, each with its own consumer and transactions over a part of `PREREG_DEDUPE_SHARDS` (which it needs)",
		parse:       func(c *Config, v string) (err error) { c.Dedupe.Workers, err = positive(v); return err }},
	{Name: "PREREG_DEDUPE_BATCH", Default: "1000",
		Description: "the most outcomes dedupe decides in one transaction",
		parse:       func(c *Config, v string) (err error) { c.Dedupe.BatchSize, err = positive(v); return err }},
	{Name: "PREREG_DEDUPE_ACK_WAIT", Default: "60s",
		Description: "how long dedupe may hold an outcome unacknowledged before JetStream delivers it again: after a crash, the wait before its batch is decided by another process; keep it above a batch's time",
		parse:       positiveDuration(func(c *Config) *time.Duration { return &c.Dedupe.AckWait })},
	{Name: "PREREG_VERIFY_ACK_WAIT", Default: "30s",
		Description: "how long verify may hold an intent unacknowledged before JetStream delivers it again (it also bounds one intent's work): after a crash, the wait before its intents are verified by another process; keep it above the providers' timeouts and below `PREREG_STREAM_VERIFIED_DUPLICATE_WINDOW`",
		parse:       positiveDuration(func(c *Config) *time.Duration { return &c.Verify.AckWait })},
	{Name: "PREREG_VERIFY_BACKOFF_CAP", Default: "30s",
		Description: "the longest verify waits before it tries an intent again after a failure (full jitter, doubling from 250ms with each delivery): after a provider outage, how long its intents may still wait",
		parse:       positiveDuration(func(c *Config) *time.Duration { return &c.Verify.BackoffCap })},
	{Name: "PREREG_VERIFY_PREFIX_CALLS", Default: "60",
		Description: "identity provider calls a verify process makes per client address prefix (see `PREREG_IPV6_PREFIX`) per minute; beyond it the intent waits, and a prefix whose tokens are almost all invalid gets a tenth of it (docs/SECURITY.md)",
		parse:       func(c *Config, v string) (err error) { c.Verify.CallsPerPrefix, err = positive(v); return err }},
	{Name: "PREREG_VERIFY_CAMPAIGN_CALLS", Default: "1000",
		Description: "identity provider calls a verify process makes per campaign per second; beyond it intents wait",
		parse: func(c *Config, v string) (err error) {
			if v == "" {
				return nil
			}
			if c.Verify.CallsPerCampaign, err = strconv.ParseFloat(v, 64); err != nil || !(c.Verify.CallsPerCampaign > 0) || math.IsInf(c.Verify.CallsPerCampaign, 0) {
				return fmt.Errorf("want calls per second > 0, got %q", v)
			}
			return nil
		}},
	{Name: "PREREG_SMS_URL",
		Description: "the SMS gateway's base URL; required by the notify role",
		parse:       func(c *Config, v string) error { c.SMS.URL = v; return nil }},
	{Name: "PREREG_SMS_SECRET", Secret: true,
		Description: "the gateway's signing secret for delivery reports (`POST /v1/sms/reports`), at least 32 characters; unset, the admin role refuses them. `prereg sim sms` signs with it",
		parse: func(c *Config, v string) error {
			if v != "" && len(v) < MinSMSSecret {
				return fmt.Errorf("want at least %d characters, got %d", MinSMSSecret, len(v))
			}
			c.SMS.Secret = []byte(v)
			return nil
		}},
	{Name: "PREREG_SMS_RATE", Default: "100",
		Description: "the SMS account's limit in messages per second, or `inf` for none",
		parse: func(c *Config, v string) (err error) {
			switch {
			case v == "":
			case v == "inf":
				c.SMS.Rate = math.Inf(1)
			default:
				if c.SMS.Rate, err = strconv.ParseFloat(v, 64); err != nil || !(c.SMS.Rate > 0) {
					return fmt.Errorf("want messages per second > 0 or inf, got %q", v)
				}
			}
			return nil
		}},
	{Name: "PREREG_SMS_CONCURRENCY", Default: "32",
		Description: "SMS sends in flight at once",
		parse:       func(c *Config, v string) (err error) { c.SMS.Concurrency, err = positive(v); return err }},
	{Name: "PREREG_SIM_IDP_SECRET", Secret: true,
		Description: "the simulated identity providers' token-signing secret (`prereg sim idp`, `loadgen`). Unset: the demo's",
		parse:       readWhereUsed},
	{Name: "PREREG_SIM_CI_SECRET", Secret: true,
		Description: "the simulated world's national CI secret, which gives a person the same identifier at every provider (`prereg sim idp`, `loadgen`). Unset: the demo's",
		parse:       readWhereUsed},
	{Name: "PREREG_STREAM_REPLICAS", Default: "1",
		Description: "replicas of both streams (and verify's KV buckets): 1 on one node, 3 in a cluster",
		parse:       streamReplicas},
	{Name: "PREREG_STREAM_SUBMITTED_MAX_AGE", Default: "7d",
		Description: "how long an unverified intent may wait, e.g. `14d`; raise it before a long outage of verify (`docs/STREAMS.md`)",
		parse:       streamAge(func(s *Stream) *time.Duration { return &s.SubmittedMaxAge })},
	{Name: "PREREG_STREAM_SUBMITTED_MAX_BYTES", Default: "8GiB",
		Description: "the submitted stream's storage bound, e.g. `500MiB`",
		parse:       streamMaxBytes},
	{Name: "PREREG_STREAM_DUPLICATE_WINDOW", Default: "20s",
		Description: "how long the submitted stream recognises a retried `Nats-Msg-Id`; it costs server memory (`docs/STREAMS.md`)",
		parse:       streamAge(func(s *Stream) *time.Duration { return &s.DuplicateWindow })},
	{Name: "PREREG_STREAM_VERIFIED_DUPLICATE_WINDOW", Default: "2m",
		Description: "the verified stream's duplicate window; keep it above verify's AckWait",
		parse:       streamAge(func(s *Stream) *time.Duration { return &s.VerifiedDuplicateWindow })},
	{Name: "PREREG_STREAM_VERIFIED_MAX_AGE", Default: "30d",
		Description: "how long outcomes are kept for `check` and replay",
		parse:       streamAge(func(s *Stream) *time.Duration { return &s.VerifiedMaxAge })},
	{Name: "PREREG_PURGE_RETENTION", Default: "30d",
		Description: "how long a campaign's personal data is kept after its last activity (its last window's close, appointment day or decision) before `prereg campaign purge` may remove it, e.g. `90d`; `0` for none. Below `PREREG_STREAM_VERIFIED_MAX_AGE`, outcomes may outlive the purge in the verified stream until they age out (docs/OPERATIONS.md)",
		parse:       purgeRetention},
	{Name: "GOGC",
		Description: "the Go collector's target. Unset: 400 in a `serve` process without the intake role (workers allocate per message and keep little), the runtime's 100 otherwise; see `app/gc.go`",
		parse:       func(c *Config, v string) error { c.GC.GOGC = v; return nil }},
	{Name: "GOMEMLIMIT",
		Description: "the Go runtime's soft memory limit. Unset: 200 MiB in a process that runs intake alone (its heap is mostly the stream's duplicate window; the limit holds it under the 256 MiB the overload benchmark allows, and costs nothing while the heap is small), none otherwise. Raise it where intake accepts more than about 70,000 intents a second, or the collector runs ever more often; see `app/gc.go`",
		parse:       func(c *Config, v string) error { c.GC.GOMEMLIMIT = v; return nil }},
	{Name: "TEST_DATABASE_URL", URL: true,
		Description: "tests only: the server tests create their databases on (`private` forces a private cluster). Unset: the local server, else a private cluster",
		parse:       readWhereUsed},
}

// readWhereUsed is the parse of a setting that no Config field holds: the
// simulators' secrets (`prereg sim idp` and loadgen call Secret with their
// names) and TEST_DATABASE_URL (postgres/pgtest, before any Config). The
// row documents them, checks a secret is not set twice, and logs them.
func readWhereUsed(*Config, string) error { return nil }

// purgeRetention reads PREREG_PURGE_RETENTION: a duration with days,
// zero or more; unset, 30 days, the verified stream's default age.
func purgeRetention(c *Config, v string) error {
	if v == "" {
		c.PurgeRetention = 30 * 24 * time.Hour
		return nil
	}
	d, err := parseDays(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 30d or 72h, or 0, got %q", v)
	}
	c.PurgeRetention = d
	return nil
}

// positiveDuration parses a positive duration such as 30s.
func positiveDuration(at func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 30s or 2m, got %q", v)
		}
		*at(c) = d
		return nil
	}
}

func positive(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive number, got %q", v)
	}
	return n, nil
}

// FromEnv reads and validates every setting. With requireSecrets
// (everything but demo and dev), missing keys are an error; otherwise they
// are made up randomly for this process and listed in cfg.Generated.
func FromEnv(getenv Getenv, requireSecrets bool) (cfg Config, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg.shown = map[string]string{}
	cfg.Production = requireSecrets
	var errs []error
	for _, s := range settings {
		v, shown, err := read(getenv, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v == "" && !requireSecrets {
			if gen := generate(s.Name); gen != "" {
				v, shown = gen, "(redacted)"
				cfg.Generated = append(cfg.Generated, s.Name)
			}
		}
		cfg.shown[s.Name] = shown
		if err := s.parse(&cfg, v); err != nil {
			// The parsers' errors never quote a secret's value (keys and
			// tokens name their id or role, not their bytes).
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		}
	}
	// Without keys prereg cannot hash or seal anything; admin tokens stay
	// optional (no token, no admin access).
	if requireSecrets {
		if cfg.shown["PREREG_HMAC_KEY"] == "" {
			errs = append(errs, errors.New("PREREG_HMAC_KEY (or PREREG_HMAC_KEY_FILE) is required: id:base64 of at least 32 random bytes, e.g. k1:$(head -c32 /dev/urandom | base64)"))
		}
		if cfg.shown["PREREG_ENC_KEY"] == "" {
			errs = append(errs, errors.New("PREREG_ENC_KEY (or PREREG_ENC_KEY_FILE) is required: id:base64 of exactly 32 random bytes"))
		}
		errs = append(errs, madeUpKeys(cfg.HMACKeys, cfg.EncKeys)...)
	}
	if cfg.AdminTokens == nil {
		cfg.AdminTokens = &AdminTokens{}
	}
	return cfg, errors.Join(errs...)
}

// MinSMSSecret is the shortest PREREG_SMS_SECRET: the signature of a
// delivery report is only as strong as the secret, and a report marks
// messages delivered.
const MinSMSSecret = 32

// CheckProviderURL is the rule for an identity provider's URL: https,
// except in demo and dev (whose simulated providers speak plain http) and
// towards this host's loopback (a sidecar that terminates TLS). Identity
// tokens travel on these calls: outside demo and dev they must not cross
// a network in the clear.
func (c *Config) CheckProviderURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("identity provider URL %q: want an http or https URL", RedactURL(raw))
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("identity provider URL %q: want https", RedactURL(raw))
	case !c.Production:
		return nil
	}
	if ip, err := netip.ParseAddr(u.Hostname()); (err == nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
		return nil
	}
	return fmt.Errorf("identity provider URL %q: plain http outside demo and dev; want https", RedactURL(raw))
}

// devKeyIDs are the ids of the keys demo and dev make up (generate), and
// of keys written for a demonstration: serve refuses them, whoever
// printed or copied them.
var devKeyIDs = []string{"dev", "demo", "test", "example"}

// madeUpKeys refuses, for serve, keys that are not secrets: a demo's or
// dev's id, a secret that is text (a passphrase, a sentence, a phrase of
// a README) or a short pattern repeated, and one secret used as both
// keys. Random bytes are none of these but with a chance below 2^-40:
// 32 random bytes all printable (95 of 256 values) is (95/256)^32, and
// fewer than 16 distinct values among 32 is rarer still.
func madeUpKeys(hmacKeys, encKeys []keys.Key) []error {
	var errs []error
	check := func(name string, ks []keys.Key) {
		for _, k := range ks {
			distinct := map[byte]bool{}
			text := true
			for _, b := range k.Secret {
				distinct[b] = true
				text = text && b >= 0x20 && b < 0x7f
			}
			switch {
			case slices.Contains(devKeyIDs, strings.ToLower(k.ID)):
				errs = append(errs, fmt.Errorf("%s: key %q is a demo or dev key id: give serve keys of its own, e.g. k1:$(head -c32 /dev/urandom | base64)", name, k.ID))
			case text:
				errs = append(errs, fmt.Errorf("%s: key %q is text, not random bytes: use e.g. $(head -c32 /dev/urandom | base64)", name, k.ID))
			case len(distinct) < 16:
				errs = append(errs, fmt.Errorf("%s: key %q repeats a few byte values, not random bytes: use e.g. $(head -c32 /dev/urandom | base64)", name, k.ID))
			}
		}
	}
	check("PREREG_HMAC_KEY", hmacKeys)
	check("PREREG_ENC_KEY", encKeys)
	for _, h := range hmacKeys {
		for _, e := range encKeys {
			if bytes.Equal(h.Secret, e.Secret) {
				errs = append(errs, fmt.Errorf("PREREG_HMAC_KEY key %q and PREREG_ENC_KEY key %q are the same secret: each needs its own", h.ID, e.ID))
			}
		}
	}
	return errs
}

// generate makes up the secrets demo and dev may run without.
func generate(name string) string {
	switch name {
	case "PREREG_HMAC_KEY", "PREREG_ENC_KEY":
		return devKeyIDs[0] + ":" + keys.Random(32)
	case "PREREG_ADMIN_TOKENS":
		tokens := "operator:" + strings.TrimRight(keys.Random(18), "=") + ",auditor:" + strings.TrimRight(keys.Random(18), "=")
		return strings.NewReplacer("+", "-", "/", "_").Replace(tokens)
	}
	return ""
}

// read returns a setting's trimmed value and how Log shows it: "" when
// unset, "(redacted)" for a secret, the value without a password for a URL.
func read(getenv Getenv, s Setting) (v, shown string, err error) {
	if s.Secret {
		v, err = Secret(getenv, s.Name)
		if v != "" {
			shown = "(redacted)"
		}
		return v, shown, err
	}
	v = strings.TrimSpace(getenv(s.Name))
	shown = v
	if s.URL && v != "" {
		shown = RedactURL(v)
	}
	return v, shown, nil
}

// RedactURL is a URL as errors and logs may show it: userinfo (a user and
// password, or a bare token as in nats://TOKEN@host) becomes "redacted",
// and so do the values of query parameters that carry credentials
// (password, token, secret, key, sig…). A key=value connection string
// keeps its keys and loses the values of the same parameters. It is the
// one function every error and log line that names a server goes through.
func RedactURL(v string) string {
	if strings.Contains(v, ",") && strings.Contains(v, "://") {
		// A NATS server list: each URL on its own.
		parts := strings.Split(v, ",")
		for i, p := range parts {
			parts[i] = RedactURL(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		if strings.Contains(v, "://") {
			return "(redacted)" // a URL too broken to take apart safely
		}
		return redactKeyValues(v)
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if credentialParam(k) {
				q[k] = []string{"redacted"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// credentialParam reports whether a query or connection-string parameter
// carries a credential.
func credentialParam(name string) bool {
	name = strings.ToLower(name)
	for _, w := range []string{"pass", "token", "secret", "key", "sig", "auth", "cred", "nkey", "jwt"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redactKeyValues redacts the credential values of a key=value connection
// string such as "host=db user=prereg password=…".
func redactKeyValues(v string) string {
	fields := strings.Fields(v)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && credentialParam(k) {
			fields[i] = k + "=redacted"
		}
	}
	return strings.Join(fields, " ")
}

// Secret reads NAME, or the file named by NAME_FILE (trailing newline
// trimmed). Setting both is an error.
func Secret(getenv Getenv, name string) (string, error) {
	v, file := getenv(name), getenv(name+"_FILE")
	if v != "" && file != "" {
		return "", fmt.Errorf("set %s or %s_FILE, not both", name, name)
	}
	if file == "" {
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// LogLevel is PREREG_LOG_LEVEL's level, for the logger a process makes
// before it reads the rest of its configuration. A bad value is info here
// and an error from FromEnv.
func LogLevel(getenv Getenv) slog.Level {
	l, _ := ParseLogLevel(strings.TrimSpace(getenv("PREREG_LOG_LEVEL")))
	return l
}

// ParseLogLevel parses PREREG_LOG_LEVEL; "" is info.
func ParseLogLevel(v string) (slog.Level, error) {
	var l slog.Level
	if v == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return slog.LevelInfo, fmt.Errorf("want debug, info, warn or error, got %q", v)
	}
	return l, nil
}

// ParseLogFormat parses PREREG_LOG_FORMAT; "" is text.
func ParseLogFormat(v string) (string, error) {
	switch v {
	case "", "text":
		return "text", nil
	case "json":
		return "json", nil
	}
	return "text", fmt.Errorf("want text or json, got %q", v)
}

// NewLogger is a process's logger as PREREG_LOG_LEVEL and
// PREREG_LOG_FORMAT ask, writing to w: slog's text or JSON handler, so
// that both formats carry the same attributes under the same keys. It is
// made before the rest of the configuration is read; a bad value is info
// or text here and an error from FromEnv.
func NewLogger(w io.Writer, getenv Getenv) *slog.Logger {
	opts := &slog.HandlerOptions{Level: LogLevel(getenv)}
	if format, _ := ParseLogFormat(strings.TrimSpace(getenv("PREREG_LOG_FORMAT"))); format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ParseShards parses a shard set such as "0-3,8,9"; "" or "all" means
// every shard (nil).
func ParseShards(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("shards %q: want numbers or ranges such as 0-7,9", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("shards %q: want numbers or ranges such as 0-7,9", s)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// Log writes every setting to log, one line each, secrets redacted:
// what a process runs with, for whoever reads its start.
func (c *Config) Log(log *slog.Logger) {
	for _, s := range settings {
		v, source := c.shown[s.Name], "environment"
		if slices.Contains(c.Generated, s.Name) {
			source = "generated"
		} else if v == "" {
			v, source = s.Default, "default"
		}
		if v == "" {
			v = "(unset)"
		}
		log.Info("setting", slog.String("name", s.Name), slog.String("value", v), slog.String("source", source))
	}
}

// Markdown is the README's configuration table, generated from Settings.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n| --- | --- | --- |\n")
	for _, s := range settings {
		def := "–"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		desc := s.Description
		if s.Secret {
			desc += ". Secret: also `" + s.Name + "_FILE`, never printed"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, desc)
	}
	return b.String()
}
