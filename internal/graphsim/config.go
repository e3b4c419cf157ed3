package graphsim

import (
	"fmt"
	"regexp"
	"time"
)

// Config shapes the simulated data set and how the simulator behaves. The counts, the
// folder share and the seed fix the data; everything else fixes behaviour and can be
// left zero.
type Config struct {
	Pages         int    // Facebook Pages
	Conversations int    // threads per Page at start
	Messages      int    // messages per thread at start
	Seed          uint64 // same seed, same data
	// Version is the Graph API version in paths ("/v21.0/..."); default "v21.0".
	Version string
	// Until bounds the generated message times: the newest is at most Until, the
	// oldest about 30 days before. Default 2026-01-01T00:00:00Z, when loadgen's
	// webhook traffic starts.
	Until time.Time

	// FolderShare is the share of each Page's generated threads placed in each of the
	// folders other, page_done and spam (the rest are in the inbox): 0 means
	// DefaultFolderShare, a negative value puts every thread in the inbox. The threads
	// are picked from the seed; each folder gets round(FolderShare × Conversations), and
	// no more than a third of them.
	FolderShare float64

	// Latency is added to every HTTP request (once per batch).
	Latency time.Duration
	// PerPageCalls is how many calls each Page token may start in any PerPageWindow
	// (default one second): a sliding window, Meta's "2 calls per second per Page" read
	// strictly, so calls at 0, 0.05 s, 1.0 s, 1.05 s pass and a third call within a
	// second of the one two before it does not. 0 means unlimited.
	PerPageCalls  int
	PerPageWindow time.Duration
	// HourlyBudget, when set, is the calls a Page may make per hour: the usage headers
	// report the share of it used, as Meta's report shares of a rolling budget. Zero
	// reports the share of the window in use instead (usage rises as a page nears
	// PerPageCalls: for tests of slowing down before a block).
	HourlyBudget int
	// AppCalls and AppWindow limit all calls of the app together (code 4) the same way;
	// 0 means unlimited and no X-App-Usage header.
	AppCalls  int
	AppWindow time.Duration
	// PenalizeThrottled makes calls made while throttled consume the budget too, so
	// they extend the block as Meta's do.
	PenalizeThrottled bool

	// FailEvery makes every nth API call (top-level request or batch operation) fail
	// with code 2; 0 never. FailRate fails calls at random with that probability
	// (drawn from Seed). In a batch an injected failure is a null entry.
	FailEvery int
	FailRate  float64

	// UserTokens are accepted as user access tokens (for /me/accounts); when empty,
	// any token that is not a Page token is a user token.
	UserTokens []string
	// MaxExpansion refuses a conversations call whose limit times its nested messages
	// limit exceeds it, with code 1 ("reduce the amount of data"); 0 never.
	MaxExpansion int
}

// DefaultFolderShare is the share of threads in each non-inbox folder when
// Config.FolderShare is 0: small, so every folder is exercised.
const DefaultFolderShare = 0.05

// DefaultConfig is a small data set for the demo and quick tests: 3 Pages of 20 threads
// of 10 messages, no latency, no limits.
func DefaultConfig() Config {
	return Config{Pages: 3, Conversations: 20, Messages: 10, Seed: 1, Version: "v21.0",
		Until: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// maxPerPage bounds threads per Page: ids and PSIDs give each Page 100000 users.
const maxPerPage = 99999

// Validate reports the first invalid field. Zero Version and Until are valid (defaults).
func (c Config) Validate() error {
	switch {
	case c.Pages < 1:
		return fmt.Errorf("graphsim: Pages = %d, want at least 1", c.Pages)
	case c.Conversations < 0 || c.Conversations > maxPerPage/2:
		return fmt.Errorf("graphsim: Conversations = %d, want 0..%d", c.Conversations, maxPerPage/2)
	case c.Messages < 1:
		return fmt.Errorf("graphsim: Messages = %d, want at least 1", c.Messages)
	case c.Version != "" && !versionRE.MatchString(c.Version):
		return fmt.Errorf("graphsim: Version = %q, want the form v21.0", c.Version)
	case c.Latency < 0:
		return fmt.Errorf("graphsim: Latency = %v, want >= 0", c.Latency)
	case c.FolderShare > 1.0/3:
		return fmt.Errorf("graphsim: FolderShare = %v, want at most 1/3 (three folders besides the inbox)", c.FolderShare)
	case c.PerPageCalls < 0 || c.PerPageWindow < 0:
		return fmt.Errorf("graphsim: PerPageCalls = %d, PerPageWindow = %v, want >= 0", c.PerPageCalls, c.PerPageWindow)
	case c.AppCalls < 0 || c.AppWindow < 0:
		return fmt.Errorf("graphsim: AppCalls = %d, AppWindow = %v, want >= 0", c.AppCalls, c.AppWindow)
	case c.FailEvery < 0:
		return fmt.Errorf("graphsim: FailEvery = %d, want >= 0", c.FailEvery)
	case c.FailRate < 0 || c.FailRate > 1:
		return fmt.Errorf("graphsim: FailRate = %v, want 0..1", c.FailRate)
	case c.MaxExpansion < 0:
		return fmt.Errorf("graphsim: MaxExpansion = %d, want >= 0", c.MaxExpansion)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.Until.IsZero() {
		c.Until = d.Until
	}
	c.Until = c.Until.UTC().Truncate(time.Second)
	switch {
	case c.FolderShare == 0:
		c.FolderShare = DefaultFolderShare
	case c.FolderShare < 0:
		c.FolderShare = 0
	}
	if c.PerPageWindow == 0 {
		c.PerPageWindow = time.Second
	}
	if c.AppWindow == 0 {
		c.AppWindow = time.Second
	}
	return c
}
