// Package loadgen makes realistic Meta webhook traffic and sends it: a mix of event kinds
// (inbound messages, echoes, deliveries, reads, reactions, edits, postbacks, referrals,
// opt-ins, standby items), Zipf-distributed pages and users, redeliveries and local
// reordering, as Meta delivers them. The benchmarks, the tests and `convsync loadgen`
// (and so `make run`'s demo) use it. Every run is bounded in requests and time.
package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// GenConfig shapes the traffic.
type GenConfig struct {
	Seed          uint64
	Pages         int       // distinct Facebook Pages
	UsersPerPage  int       // distinct PSIDs per page
	ZipfS         float64   // skew of pages and users (>1; larger is more skewed)
	MaxItems      int       // messaging items per delivery: 1..MaxItems
	DuplicateRate float64   // share of deliveries that are a redelivery of an earlier one
	ReorderWindow int       // deliveries leave a window of this size in random order
	Start         time.Time // event time of the first event
}

// DefaultGenConfig is the mix the benchmarks use.
func DefaultGenConfig() GenConfig {
	return GenConfig{Seed: 1, Pages: 50, UsersPerPage: 2000, ZipfS: 1.1, MaxItems: 3,
		DuplicateRate: 0.02, ReorderWindow: 8, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Delivery is one webhook POST body and the number of events in it.
type Delivery struct {
	Body   []byte
	Events int
}

// kind weights, in per mille, after the mix seen on busy Pages: most traffic is messages
// and their echoes, deliveries and reads.
var mix = []struct {
	kind   string
	weight int
}{
	{"message", 400}, {"echo", 250}, {"delivery", 120}, {"read", 120}, {"reaction", 40},
	{"postback", 30}, {"edit", 20}, {"standby", 10}, {"referral", 6}, {"optin", 4},
}

type conv struct {
	n    int      // messages so far
	mids []string // recent mids, for reactions and edits
}

// Generator makes deliveries; it is deterministic for a seed and not safe for concurrent
// use.
type Generator struct {
	cfg     GenConfig
	rng     *rand.Rand
	pages   *rand.Zipf
	users   *rand.Zipf
	clock   int64 // ms
	convs   map[[2]int]*conv
	sent    [][]byte // recent bodies, for redeliveries
	pending []Delivery
}

// NewGenerator returns a generator for cfg (zero fields take DefaultGenConfig's).
func NewGenerator(cfg GenConfig) *Generator {
	d := DefaultGenConfig()
	if cfg.Pages <= 0 {
		cfg.Pages = d.Pages
	}
	if cfg.UsersPerPage <= 0 {
		cfg.UsersPerPage = d.UsersPerPage
	}
	if cfg.ZipfS <= 1 {
		cfg.ZipfS = d.ZipfS
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = d.MaxItems
	}
	if cfg.Start.IsZero() {
		cfg.Start = d.Start
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	return &Generator{
		cfg:   cfg,
		rng:   rng,
		pages: rand.NewZipf(rng, cfg.ZipfS, 1, uint64(cfg.Pages-1)),
		users: rand.NewZipf(rng, cfg.ZipfS, 1, uint64(cfg.UsersPerPage-1)),
		clock: cfg.Start.UnixMilli(),
		convs: map[[2]int]*conv{},
	}
}

// PageID is the id of page i.
func PageID(i int) string { return strconv.Itoa(104400000000000 + i) }

// PSID is the id of user u of page p (page-scoped, so it differs per page).
func PSID(p, u int) string { return strconv.Itoa(7300000000000000 + p*100000 + u) }

type item map[string]any

// Next returns the next delivery.
func (g *Generator) Next() (Delivery, error) {
	for len(g.pending) < max(1, g.cfg.ReorderWindow) {
		d, err := g.fresh()
		if err != nil {
			return Delivery{}, err
		}
		g.pending = append(g.pending, d)
	}
	i := g.rng.IntN(len(g.pending))
	d := g.pending[i]
	g.pending[i] = g.pending[len(g.pending)-1]
	g.pending = g.pending[:len(g.pending)-1]
	return d, nil
}

func (g *Generator) fresh() (Delivery, error) {
	if len(g.sent) > 0 && g.rng.Float64() < g.cfg.DuplicateRate {
		b := g.sent[g.rng.IntN(len(g.sent))]
		return Delivery{Body: b, Events: countEvents(b)}, nil
	}
	p := int(g.pages.Uint64())
	page := PageID(p)
	n := 1 + g.rng.IntN(g.cfg.MaxItems)
	var messaging, standby []item
	for range n {
		g.clock += 1 + int64(g.rng.IntN(50))
		it, isStandby := g.event(p)
		if isStandby {
			standby = append(standby, it)
		} else {
			messaging = append(messaging, it)
		}
	}
	entry := item{"id": page, "time": g.clock}
	if len(messaging) > 0 {
		entry["messaging"] = messaging
	}
	if len(standby) > 0 {
		entry["standby"] = standby
	}
	b, err := json.Marshal(item{"object": "page", "entry": []item{entry}})
	if err != nil {
		return Delivery{}, fmt.Errorf("loadgen: marshal delivery: %w", err)
	}
	if len(g.sent) < 256 {
		g.sent = append(g.sent, b)
	} else {
		g.sent[g.rng.IntN(len(g.sent))] = b
	}
	return Delivery{Body: b, Events: n}, nil
}

func countEvents(b []byte) int {
	var v struct {
		Entry []struct {
			Messaging []json.RawMessage `json:"messaging"`
			Standby   []json.RawMessage `json:"standby"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(b, &v)
	n := 0
	for _, e := range v.Entry {
		n += len(e.Messaging) + len(e.Standby)
	}
	return n
}

func (g *Generator) pick() string {
	r := g.rng.IntN(1000)
	for _, m := range mix {
		if r < m.weight {
			return m.kind
		}
		r -= m.weight
	}
	return "message"
}

// event makes one messaging item for page p; isStandby when it belongs in standby[].
func (g *Generator) event(p int) (item, bool) {
	u := int(g.users.Uint64())
	page, psid := PageID(p), PSID(p, u)
	c := g.convs[[2]int{p, u}]
	if c == nil {
		c = &conv{}
		g.convs[[2]int{p, u}] = c
	}
	inbound := item{"sender": item{"id": psid}, "recipient": item{"id": page}, "timestamp": g.clock}
	kind := g.pick()
	if len(c.mids) == 0 && kind != "message" && kind != "echo" && kind != "standby" {
		kind = "message" // nothing to react to, edit or read yet
	}
	newMID := func() string {
		c.n++
		mid := fmt.Sprintf("m_%d_%d_%d", p, u, c.n)
		c.mids = append(c.mids, mid)
		if len(c.mids) > 8 {
			c.mids = c.mids[1:]
		}
		return mid
	}
	old := func() string {
		if len(c.mids) == 0 {
			return newMID()
		}
		return c.mids[g.rng.IntN(len(c.mids))]
	}
	switch kind {
	case "echo":
		return item{"sender": item{"id": page}, "recipient": item{"id": psid}, "timestamp": g.clock,
			"message": item{"is_echo": true, "app_id": 263902037430900, "mid": newMID(), "text": texts[g.rng.IntN(len(texts))]}}, false
	case "delivery":
		inbound["delivery"] = item{"mids": []string{old()}, "watermark": g.clock - 1}
	case "read":
		inbound["read"] = item{"watermark": g.clock - 1}
	case "reaction":
		r := reactions[g.rng.IntN(len(reactions))]
		if g.rng.IntN(5) == 0 {
			inbound["reaction"] = item{"mid": old(), "action": "unreact"}
		} else {
			inbound["reaction"] = item{"mid": old(), "action": "react", "reaction": r, "emoji": "\u2764\ufe0f"}
		}
	case "postback":
		inbound["postback"] = item{"title": "Get Started", "payload": "GET_STARTED", "mid": newMID()}
	case "edit":
		inbound["message_edit"] = item{"mid": old(), "text": texts[g.rng.IntN(len(texts))] + " (edited)", "num_edit": 1 + g.rng.IntN(5)}
	case "referral":
		inbound["referral"] = item{"ref": "promo", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045246247433"}
	case "optin":
		inbound["optin"] = item{"type": "notification_messages", "payload": "weekly", "title": "Weekly deals"}
	case "standby":
		inbound["message"] = item{"mid": newMID(), "text": texts[g.rng.IntN(len(texts))]}
		return inbound, true
	default:
		m := item{"mid": newMID(), "text": texts[g.rng.IntN(len(texts))]}
		if g.rng.IntN(10) == 0 {
			m["attachments"] = []item{{"type": "image", "payload": item{"url": "https://cdn.example/i/" + strconv.Itoa(c.n) + ".jpg"}}}
		}
		inbound["message"] = m
	}
	return inbound, false
}

var (
	texts     = []string{"Is the blue one in stock?", "Yes, size M left.", "Thanks!", "When do you open?", "Grüße 👋", "Can I return it?", "Order #4411 shipped."}
	reactions = []string{"love", "like", "smile", "wow", "sad", "angry"}
)
