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
	// HourlyBudget is the calls a Page token may make in any rolling hour, and what the
	// X-Business-Use-Case-Usage header reports a share of, as Meta's does; 0 means
	// DefaultHourlyBudget. A token that used it all is refused (code 80001) until enough
	// of its calls are an hour old, with estimated_time_to_regain_access.
	HourlyBudget int
	// WindowUsage reports the share of PerPageWindow in use instead, so usage reads 100%
	// at each window's last call. Meta does not do this: it is for tests of a client
	// slowing down before a block, and it makes a client that pauses on high usage crawl.
	WindowUsage bool
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

// DefaultHourlyBudget is HourlyBudget when none is given: 4800 calls per Page token per
// rolling hour. Meta gives Pages API calls with a Page token 4800 × engaged users per
// rolling 24 hours (docs/meta-platform.md, section 6), so this is a Page of 24 engaged
// users, far below the budget of the simulated Pages (one user per thread), and still
// above what Meta's 2 calls per second per Page could spend in 40 minutes: a backfill
// reads a small share of it, as it would from Meta.
const DefaultHourlyBudget = 4800

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
	case c.HourlyBudget < 0:
		return fmt.Errorf("graphsim: HourlyBudget = %d, want >= 0", c.HourlyBudget)
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
	if c.HourlyBudget == 0 {
		c.HourlyBudget = DefaultHourlyBudget
	}
	if c.AppWindow == 0 {
		c.AppWindow = time.Second
	}
	return c
}
