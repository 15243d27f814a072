// Package config reads prereg's configuration from the environment, in one
// place: DATABASE_URL, NATS_URL, PREREG_HMAC_KEY, PREREG_ENC_KEY,
// PREREG_ADMIN_TOKENS, each secret also as a *_FILE variant holding the
// value in a file (for container secrets).
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prereg/prereg/keys"
)

// Config is the environment's part of the configuration; flags add the rest.
type Config struct {
	DatabaseURL string // "" = local server, else private cluster; "private" forces it
	NatsURL     string // "" = embedded JetStream (demo, dev only)
	HMACKeys    []keys.Key
	EncKeys     []keys.Key
	AdminTokens *AdminTokens
}

// Getenv is os.Getenv's shape, injectable for tests.
type Getenv func(string) string

// FromEnv reads the configuration. With requireSecrets (everything but
// demo and dev), missing keys are an error; otherwise they are made up
// randomly for this process, and generated reports Which it made.
func FromEnv(getenv Getenv, requireSecrets bool) (cfg Config, generated []string, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg.DatabaseURL = strings.TrimSpace(getenv("DATABASE_URL"))
	cfg.NatsURL = strings.TrimSpace(getenv("NATS_URL"))

	var errs []error
	secret := func(name string) string {
		v, e := Secret(getenv, name)
		if e != nil {
			errs = append(errs, e)
		}
		return v
	}
	hmacKey := secret("PREREG_HMAC_KEY")
	encKey := secret("PREREG_ENC_KEY")
	tokens := secret("PREREG_ADMIN_TOKENS")

	if hmacKey == "" && !requireSecrets {
		hmacKey, generated = "dev:"+keys.Random(32), append(generated, "PREREG_HMAC_KEY")
	}
	if encKey == "" && !requireSecrets {
		encKey, generated = "dev:"+keys.Random(32), append(generated, "PREREG_ENC_KEY")
	}
	if tokens == "" && !requireSecrets {
		tokens = "operator:" + strings.TrimRight(keys.Random(18), "=") + ",auditor:" + strings.TrimRight(keys.Random(18), "=")
		tokens = strings.NewReplacer("+", "-", "/", "_").Replace(tokens)
		generated = append(generated, "PREREG_ADMIN_TOKENS")
	}
	switch {
	case hmacKey == "":
		errs = append(errs, errors.New("PREREG_HMAC_KEY (or PREREG_HMAC_KEY_FILE) is required: id:base64 of at least 32 random bytes, e.g. k1:$(head -c32 /dev/urandom | base64)"))
	default:
		if cfg.HMACKeys, err = keys.ParseKeys(hmacKey, 32); err != nil {
			errs = append(errs, fmt.Errorf("PREREG_HMAC_KEY: %w", err))
		}
	}
	switch {
	case encKey == "":
		errs = append(errs, errors.New("PREREG_ENC_KEY (or PREREG_ENC_KEY_FILE) is required: id:base64 of exactly 32 random bytes"))
	default:
		if cfg.EncKeys, err = keys.ParseKeys(encKey, 32); err != nil {
			errs = append(errs, fmt.Errorf("PREREG_ENC_KEY: %w", err))
		}
	}
	if tokens != "" {
		if cfg.AdminTokens, err = ParseAdminTokens(tokens); err != nil {
			errs = append(errs, fmt.Errorf("PREREG_ADMIN_TOKENS: %w", err))
		}
	} else {
		cfg.AdminTokens = &AdminTokens{}
	}
	return cfg, generated, errors.Join(errs...)
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
