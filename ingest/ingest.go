// Package ingest turns Meta webhooks into events on the event log.
//
// In: GET /api/webhook (the verification handshake) and POST /api/webhook (signed event
// notifications, object "page"). Out: one CloudEvents record per messaging[], standby[]
// and changes[] item on convsync.events.v1, keyed by page id (schemas describes them).
//
// Guarantees:
//   - Nothing acknowledged is lost: the answer is 200 only after Kafka acknowledged every
//     record of the request (idempotent producer, acks=all). When Kafka fails or the
//     produce deadline passes the answer is 503, so Meta delivers again; the event ids are
//     deterministic, so a redelivery is a harmless duplicate downstream.
//   - Bad requests append nothing: a missing or wrong X-Hub-Signature-256 is 401, a body
//     over the limit 413, malformed JSON or an object other than "page" 400.
//   - Nothing is dropped silently: an event kind convsync does not know becomes an
//     "unknown" event with its raw JSON, and is counted.
//   - No message text, token or secret reaches the logs.
package ingest

import (
	"errors"
	"fmt"
	"time"
)

// Config is the webhook endpoint's configuration.
type Config struct {
	VerifyToken    string        // WEBHOOK_VERIFY_TOKEN: the token of the GET handshake
	AppSecret      string        // META_APP_SECRET: key of X-Hub-Signature-256
	MaxBodyBytes   int64         // WEBHOOK_MAX_BODY_BYTES: larger bodies get 413
	ProduceTimeout time.Duration // WEBHOOK_PRODUCE_TIMEOUT: after it the answer is 503
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{MaxBodyBytes: 4 << 20, ProduceTimeout: 2 * time.Second}
}

// Validate reports the first invalid value, naming its variable.
func (c Config) Validate() error {
	switch {
	case c.AppSecret == "":
		return errors.New("META_APP_SECRET is required: webhooks are verified with it")
	case c.VerifyToken == "":
		return errors.New("WEBHOOK_VERIFY_TOKEN is required: Meta's subscription handshake checks it")
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("WEBHOOK_MAX_BODY_BYTES must be at least 1024, got %d", c.MaxBodyBytes)
	case c.ProduceTimeout <= 0 || c.ProduceTimeout > 4*time.Second:
		return fmt.Errorf("WEBHOOK_PRODUCE_TIMEOUT must be between 0 and 4s (Meta waits 5s), got %s", c.ProduceTimeout)
	}
	return nil
}
