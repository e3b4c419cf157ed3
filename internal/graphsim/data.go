package graphsim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convsync/convsync/internal/loadgen"
)

// Page is a Facebook Page and its Page access token.
type Page struct {
	ID          string
	Name        string
	Category    string
	AccessToken string
}

// User is a person who wrote to a Page; the PSID is scoped to that Page.
type User struct {
	PSID      string
	Name      string
	FirstName string
	LastName  string
}

// Folders of a Page's inbox (spec 4.1): the conversations listing covers FolderInbox
// unless asked for another with folder=.
const (
	FolderInbox = "inbox"
	FolderOther = "other"
	FolderDone  = "page_done"
	FolderSpam  = "spam"
)

// Folders returns every folder, the inbox first.
func Folders() []string { return []string{FolderInbox, FolderOther, FolderDone, FolderSpam} }

// Conversation is a thread between a Page and one user, as the conversations edge
// describes it.
type Conversation struct {
	ID           string // t_…
	PageID       string
	Folder       string // FolderInbox, FolderOther, FolderDone or FolderSpam
	User         User
	UpdatedTime  time.Time // the newest message's created_time
	MessageCount int
	UnreadCount  int // inbound messages after the Page's last reply
	Snippet      string
}

// Message is one message of a thread. Inbound messages are from the user to the Page,
// the others from the Page to the user.
type Message struct {
	ID          string // m_<page index>_<user index>_<n>, n from 1
	ThreadID    string
	PageID      string
	PSID        string
	Inbound     bool
	Text        string // "" when the message is only an attachment
	Attachments []Attachment
	CreatedTime time.Time // whole seconds, as Graph reports it
}

// Attachment is an image attached to a message.
type Attachment struct {
	ID         string
	MimeType   string
	Name       string
	Size       int
	URL        string
	PreviewURL string
	Width      int
	Height     int
}

// readableRecent is how many of a thread's newest messages can be read in detail
// (Conversations API guide); older ones are listed by id only.
const readableRecent = 20

type page struct {
	Page
	idx     int
	expired bool
	convs   []*conv          // newest first: updated_time desc, id asc
	byPSID  map[string]*conv // PSID -> thread
	nextU   int              // user index of the next new thread
	nameRNG *rand.Rand       // names for users AddMessage creates
}

type conv struct {
	id     string
	page   *page
	folder string
	user   User
	u      int       // user index in mids
	msgs   []Message // oldest first
}

func (c *conv) updated() time.Time { return c.msgs[len(c.msgs)-1].CreatedTime }

func (c *conv) key() cursorKey { return cursorKey{t: c.updated().Unix(), id: c.id} }

func (c *conv) unread() int {
	n := 0
	for i := len(c.msgs) - 1; i >= 0 && c.msgs[i].Inbound; i-- {
		n++
	}
	return n
}

func (c *conv) snippet() string {
	m := c.msgs[len(c.msgs)-1]
	if m.Text != "" {
		return m.Text
	}
	if len(m.Attachments) > 0 {
		return "Sent a photo."
	}
	return ""
}

// newest returns the message j places from the newest (0 = newest).
func (c *conv) newest(j int) *Message { return &c.msgs[len(c.msgs)-1-j] }

// msgKey orders messages newest first; equal times put the later-added (higher n) first.
func msgKey(m *Message) cursorKey {
	n, _ := strconv.Atoi(m.ID[strings.LastIndexByte(m.ID, '_')+1:])
	return cursorKey{t: m.CreatedTime.Unix(), id: fmt.Sprintf("%010d", 1_000_000_000-n)}
}

func (c *conv) export() Conversation {
	return Conversation{ID: c.id, PageID: c.page.ID, Folder: c.folder, User: c.user, UpdatedTime: c.updated(),
		MessageCount: len(c.msgs), UnreadCount: c.unread(), Snippet: c.snippet()}
}

type msgRef struct {
	c *conv
	i int // index in c.msgs
}

var (
	adjectives = []string{"Blue", "Green", "Sunny", "Urban", "Little", "Golden", "Quiet", "Bright", "Wild", "Happy"}
	nouns      = []string{"Shop", "Bakery", "Garage", "Studio", "Florist", "Books", "Cafe", "Gym", "Tailor", "Market"}
	categories = []string{"Shopping & Retail", "Bakery", "Automotive Repair Shop", "Photographer", "Florist",
		"Book Store", "Cafe", "Gym/Physical Fitness Center", "Tailor", "Grocery Store"}
	firstNames = []string{"Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
		"Kira", "Luca", "Mei", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara"}
	lastNames = []string{"Kowalski", "Nguyen", "Martin", "Okafor", "Rossi", "Schmidt", "Tanaka", "Silva",
		"Dubois", "Haddad", "Larsen", "Murphy", "Novak", "Petrov", "Reyes", "Weber"}
	inboundTexts = []string{"Hi, is this still available?", "What are your opening hours?",
		"Can I book for Saturday?", "How much is shipping?", "Thanks!", "Do you have it in blue?",
		"Where are you located?", "Is there parking nearby?", "Great, see you then", "Any discount today?"}
	outboundTexts = []string{"Hello! Yes, it is.", "We open at 9 and close at 18.", "Sure, what time suits you?",
		"Shipping is free above 50 EUR.", "You're welcome!", "Let me check and come back to you.",
		"We are on Main Street 12.", "See you soon!"}
)

func rngFor(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, stream*0xbf58476d1ce4e5b9+1))
}

func threadID(p, u int) string { return "t_" + strconv.Itoa(5520000000000000+p*100000+u) }

func newUser(r *rand.Rand, psid string) User {
	f, l := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
	return User{PSID: psid, FirstName: f, LastName: l, Name: f + " " + l}
}

// generate builds Page p and its threads; it depends only on the seed, p and the counts.
func generate(cfg Config, p int) *page {
	r := rngFor(cfg.Seed, uint64(p))
	a, n := r.IntN(len(adjectives)), r.IntN(len(nouns))
	pg := &page{
		Page: Page{ID: loadgen.PageID(p), Name: adjectives[a] + " " + nouns[n], Category: categories[n],
			AccessToken: fmt.Sprintf("EAAG%016x%016x", r.Uint64(), r.Uint64())},
		idx: p, byPSID: map[string]*conv{}, nextU: cfg.Conversations,
		nameRNG: rngFor(cfg.Seed, uint64(p)+1<<32),
	}
	for u := range cfg.Conversations {
		c := &conv{id: threadID(p, u), page: pg, folder: FolderInbox, user: newUser(r, loadgen.PSID(p, u)), u: u}
		last := cfg.Until.Add(-time.Duration(r.Int64N(30*24*3600)) * time.Second)
		times := make([]time.Time, cfg.Messages)
		t := last
		for k := cfg.Messages - 1; k >= 0; k-- {
			times[k] = t
			t = t.Add(-time.Duration(5+r.Int64N(6*3600)) * time.Second)
		}
		c.msgs = make([]Message, cfg.Messages)
		for k := range cfg.Messages {
			in := k == 0 || r.IntN(2) == 0
			m := Message{ID: mid(p, u, k+1), ThreadID: c.id, PageID: pg.ID, PSID: c.user.PSID,
				Inbound: in, CreatedTime: times[k]}
			switch {
			case r.IntN(12) == 0:
				m.Attachments = []Attachment{attachment(m.ID, r)}
			case in:
				m.Text = inboundTexts[r.IntN(len(inboundTexts))]
			default:
				m.Text = outboundTexts[r.IntN(len(outboundTexts))]
			}
			c.msgs[k] = m
		}
		pg.convs = append(pg.convs, c)
		pg.byPSID[c.user.PSID] = c
	}
	// Folders are drawn from a stream of their own, so the threads, names and messages
	// of a seed are the same whatever the share.
	k := min(int(math.Round(cfg.FolderShare*float64(cfg.Conversations))), cfg.Conversations/3)
	perm := rngFor(cfg.Seed, uint64(p)+2<<32).Perm(cfg.Conversations)
	for i, f := range Folders()[1:] {
		for _, u := range perm[i*k : (i+1)*k] {
			pg.convs[u].folder = f
		}
	}
	slices.SortFunc(pg.convs, func(a, b *conv) int { return a.key().cmp(b.key()) })
	return pg
}

func mid(p, u, n int) string { return fmt.Sprintf("m_%d_%d_%d", p, u, n) }

func attachment(mid string, r *rand.Rand) Attachment {
	h := fnv.New64a()
	h.Write([]byte(mid))
	id := strconv.FormatUint(h.Sum64()%1e15+1e15, 10)
	w, hgt := 640+r.IntN(4)*320, 480+r.IntN(4)*240
	url := "https://scontent.xx.fbcdn.net/v/t1.15752-9/" + id + "_n.jpg"
	return Attachment{ID: id, MimeType: "image/jpeg", Name: "image-" + id + ".jpg", Size: 20000 + r.IntN(500000),
		URL: url, PreviewURL: url + "?stp=dst-jpg_p280x280", Width: w, Height: hgt}
}

// Pages returns every Page in id order.
func (s *Sim) Pages() []Page {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Page, len(s.pages))
	for i, p := range s.pages {
		out[i] = p.Page
	}
	return out
}

// Conversations returns a Page's threads of every folder newest first (Folder says
// which; the conversations edge lists one folder at a time); nil for an unknown Page.
func (s *Sim) Conversations(pageID string) []Conversation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.byPage[pageID]
	if p == nil {
		return nil
	}
	out := make([]Conversation, len(p.convs))
	for i, c := range p.convs {
		out[i] = c.export()
	}
	return out
}

// Messages returns a thread's messages newest first; nil for an unknown thread.
func (s *Sim) Messages(threadID string) []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.byThread[threadID]
	if c == nil {
		return nil
	}
	out := make([]Message, len(c.msgs))
	for j := range c.msgs {
		out[j] = *c.newest(j)
		out[j].Attachments = slices.Clone(out[j].Attachments)
	}
	return out
}

// AddMessage adds an inbound message from psid to a Page at time at (truncated to the
// second), starting a thread in the inbox when the user has none. The thread's
// updated_time becomes the newest message time, which moves it to the front of its
// folder's listing when at is the newest; it stays in its folder.
func (s *Sim) AddMessage(pageID, psid, text string, at time.Time) (Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byPage[pageID]
	if p == nil {
		return Message{}, fmt.Errorf("add message to page %s: unknown page", pageID)
	}
	if psid == "" {
		return Message{}, fmt.Errorf("add message to page %s: empty psid", pageID)
	}
	c := p.byPSID[psid]
	if c == nil {
		if p.nextU >= maxPerPage {
			return Message{}, fmt.Errorf("add message to page %s: page has %d threads already", pageID, p.nextU)
		}
		c = &conv{id: threadID(p.idx, p.nextU), page: p, folder: FolderInbox, user: newUser(p.nameRNG, psid), u: p.nextU}
		p.nextU++
		p.byPSID[psid] = c
		s.byThread[c.id] = c
	} else {
		i, _ := slices.BinarySearchFunc(p.convs, c.key(), func(x *conv, k cursorKey) int { return x.key().cmp(k) })
		p.convs = slices.Delete(p.convs, i, i+1)
	}
	at = at.UTC().Truncate(time.Second)
	m := Message{ID: mid(p.idx, c.u, len(c.msgs)+1), ThreadID: c.id, PageID: p.ID, PSID: psid,
		Inbound: true, Text: text, CreatedTime: at}
	// Keep msgs in time order; a message older than the newest goes in its place.
	i := len(c.msgs)
	for i > 0 && c.msgs[i-1].CreatedTime.After(at) {
		i--
	}
	c.msgs = slices.Insert(c.msgs, i, m)
	for k := i; k < len(c.msgs); k++ {
		s.byMID[c.msgs[k].ID] = msgRef{c: c, i: k}
	}
	j, _ := slices.BinarySearchFunc(p.convs, c.key(), func(x *conv, k cursorKey) int { return x.key().cmp(k) })
	p.convs = slices.Insert(p.convs, j, c)
	return m, nil
}
