package graphsim

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Listing limits: the default, and the maxima integrators report (spec 4.3).
const (
	defaultLimit      = 25
	maxThreadLimit    = 200
	maxMessageLimit   = 100
	graphTimeLayout   = "2006-01-02T15:04:05-0700"
	contentTypeJSON   = "application/json; charset=UTF-8"
	userTokenIdentity = "100000000000001" // id of the user behind any user token
)

// call is one API call being answered.
type call struct {
	base  string     // "http://host/v21.0/", for paging links
	q     url.Values // query (and form) parameters
	page  *page      // Page of the token; nil for a user token
	dateU bool       // date_format=U
}

func (cl *call) time(t time.Time) any {
	if cl.dateU {
		return t.Unix()
	}
	return t.UTC().Format(graphTimeLayout)
}

// result is the answer to one API call.
type result struct {
	status   int
	header   http.Header
	body     []byte
	injected bool // failed by error injection: a batch reports it as null
}

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.count(func(c *Counts) { c.HTTP++ })
	if err := sleep(r.Context(), s.cfg.Latency); err != nil {
		return // the client left
	}
	prefix := "/" + s.cfg.Version
	path := r.URL.Path
	if path == prefix || strings.HasPrefix(path, prefix+"/") {
		path = path[len(prefix):]
	}
	path = strings.Trim(path, "/")
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		_ = r.ParseMultipartForm(32 << 20)
	}
	_ = r.ParseForm()
	q := r.Form
	if q.Get("access_token") == "" {
		if a := r.Header.Get("Authorization"); a != "" {
			if _, tok, ok := strings.Cut(a, " "); ok {
				q.Set("access_token", tok)
			}
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host + prefix + "/"
	var res result
	if path == "" && r.Method == http.MethodPost {
		res = s.batch(r.Context(), q, base)
	} else {
		res = s.do(r.Context(), r.Method, path, q, base)
	}
	for k, v := range res.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

func kindOf(path string) Kind {
	segs := strings.Split(path, "/")
	switch {
	case path == "":
		return KindIDs
	case path == "me":
		return KindMe
	case path == "me/accounts":
		return KindAccounts
	case len(segs) == 1:
		return KindNode
	case len(segs) == 2 && segs[1] == "conversations":
		return KindConversations
	case len(segs) == 2 && segs[1] == "messages":
		return KindMessages
	}
	return KindOther
}

// do answers one API call: a top-level request or a batch operation.
func (s *Sim) do(ctx context.Context, method, path string, q url.Values, base string) result {
	kind := kindOf(path)
	s.count(func(c *Counts) { c.Calls++; c.ByKind[kind]++ })
	res, err := s.answer(method, path, q, base)
	if err == nil {
		return res
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errTransient()
	}
	return s.fail(ae, res.injected)
}

// fail renders an error answer and counts it.
func (s *Sim) fail(ae *apiError, injected bool) result {
	s.count(func(c *Counts) {
		c.Errors++
		switch ae.code {
		case 4, 80001:
			c.Throttled++
		}
	})
	b := marshal(ae.body(s.fbtrace()))
	h := ae.header
	if h == nil {
		h = http.Header{}
	}
	h.Set("WWW-Authenticate", `OAuth "Facebook Platform" "`+errName(ae.code)+`" "`+ae.message+`"`)
	return result{status: ae.status, header: h, body: b, injected: injected}
}

func errName(code int) string {
	switch code {
	case 190, 104:
		return "invalid_token"
	case 2, 1:
		return "unknown_error"
	}
	return "invalid_request"
}

func (s *Sim) answer(method, path string, q url.Values, base string) (result, error) {
	tok := q.Get("access_token")
	if tok == "" {
		return result{}, errNoToken()
	}
	s.mu.RLock()
	pg, expired := s.byToken[tok], false
	if pg != nil {
		expired = pg.expired
	}
	s.mu.RUnlock()
	user := pg == nil && (len(s.users) == 0 || s.users[tok])
	if pg == nil && !user {
		return result{}, errBadToken()
	}
	if expired {
		return result{}, errExpired()
	}
	pageID := ""
	if pg != nil {
		pageID = pg.ID
		s.count(func(c *Counts) { c.ByPage[pageID]++ })
	}
	h, ae := s.admit(pageID)
	if ae != nil {
		return result{}, ae
	}
	if s.inject() {
		s.count(func(c *Counts) { c.Injected++ })
		e := errTransient()
		e.header = h
		return result{injected: true}, e
	}
	if method != http.MethodGet {
		return result{}, errUnsupported(strings.ToLower(method))
	}
	cl := &call{base: base, q: q, page: pg, dateU: q.Get("date_format") == "U"}
	s.mu.RLock()
	v, err := s.route(cl, path)
	s.mu.RUnlock()
	if err != nil {
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.header == nil {
			ae.header = h
		}
		return result{}, err
	}
	h.Set("Content-Type", contentTypeJSON)
	return result{status: http.StatusOK, header: h, body: marshal(v)}, nil
}

// route answers a GET under s.mu read-locked.
func (s *Sim) route(cl *call, path string) (any, error) {
	fs, err := parseFields(cl.q.Get("fields"))
	if err != nil {
		return nil, errParam("Syntax error in fields: %v", err)
	}
	segs := strings.Split(path, "/")
	switch {
	case path == "":
		return s.ids(cl, fs)
	case path == "me":
		if cl.page != nil {
			return s.node(cl, cl.page.ID, fs)
		}
		return project(map[string]any{"id": userTokenIdentity, "name": "Sim Admin"}, fs), nil
	case path == "me/accounts":
		if cl.page != nil {
			return nil, errNoField("accounts", "Page")
		}
		return s.accounts(cl, fs)
	case len(segs) == 1:
		if cl.page == nil {
			return nil, errNeedPageToken()
		}
		return s.node(cl, segs[0], fs)
	case len(segs) == 2 && segs[1] == "conversations":
		if cl.page == nil {
			return nil, errNeedPageToken()
		}
		p := s.byPage[segs[0]]
		if p == nil {
			return nil, errNoObject(segs[0])
		}
		if p != cl.page {
			return nil, errWrongPage(p.ID)
		}
		return s.conversations(cl, p, fs)
	case len(segs) == 2 && segs[1] == "messages":
		if cl.page == nil {
			return nil, errNeedPageToken()
		}
		c := s.byThread[segs[0]]
		if c == nil {
			return nil, errNoObject(segs[0])
		}
		if c.page != cl.page {
			return nil, errWrongPage(c.page.ID)
		}
		limit, err := limitParam(cl.q, maxMessageLimit)
		if err != nil {
			return nil, err
		}
		q := cl.q
		return s.messagesEdge(cl, c, fs, limit, q.Get("after"), q.Get("before"), func(param, cursor string) string {
			return link(cl.base+c.id+"/messages", q, param, cursor)
		})
	}
	return nil, errUnknownPath(path)
}

func limitParam(q url.Values, maxLimit int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errParam("Param limit must be a non-negative integer")
	}
	return min(n, maxLimit), nil
}

// link is the URL of a neighbouring window: q with the cursor parameter replaced.
func link(base string, q url.Values, param, cursor string) string {
	v := url.Values{}
	for k, vs := range q {
		if k != "after" && k != "before" {
			v[k] = vs
		}
	}
	v.Set(param, cursor)
	return base + "?" + v.Encode()
}

// ids answers /?ids=a,b: an object keyed by id.
func (s *Sim) ids(cl *call, fs []field) (any, error) {
	list := cl.q.Get("ids")
	if list == "" {
		return nil, errParam("Missing node id: pass ids or a path")
	}
	if cl.page == nil {
		return nil, errNeedPageToken()
	}
	out := map[string]any{}
	for _, id := range strings.Split(list, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		v, err := s.node(cl, id, fs)
		if err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, nil
}

// node answers /{id} for a Page, a thread, a message or a PSID of the token's Page.
func (s *Sim) node(cl *call, id string, fs []field) (any, error) {
	if p := s.byPage[id]; p != nil {
		if p != cl.page {
			return nil, errWrongPage(p.ID)
		}
		return s.renderPage(p, fs, false)
	}
	if c := s.byThread[id]; c != nil {
		if c.page != cl.page {
			return nil, errWrongPage(c.page.ID)
		}
		return s.renderConv(cl, c, fs)
	}
	if ref, ok := s.byMID[id]; ok {
		if ref.c.page != cl.page {
			return nil, errWrongPage(ref.c.page.ID)
		}
		if len(ref.c.msgs)-1-ref.i >= readableRecent {
			return nil, errOldMessage(id)
		}
		return s.renderMessage(cl, ref.c, &ref.c.msgs[ref.i], true, fs)
	}
	if c := cl.page.byPSID[id]; c != nil {
		return s.renderUser(c, fs)
	}
	return nil, errNoObject(id)
}

func (s *Sim) accounts(cl *call, fs []field) (any, error) {
	limit, err := limitParam(cl.q, maxThreadLimit)
	if err != nil {
		return nil, err
	}
	key := func(i int) cursorKey { return cursorKey{id: s.pages[i].ID} }
	lo, hi, err := window(len(s.pages), key, limit, cl.q.Get("after"), cl.q.Get("before"))
	if err != nil {
		return nil, errParam("Invalid cursor")
	}
	data := make([]map[string]any, 0, hi-lo)
	for _, p := range s.pages[lo:hi] {
		v, err := s.renderPage(p, fs, true)
		if err != nil {
			return nil, err
		}
		data = append(data, v)
	}
	out := map[string]any{"data": data}
	if pg := paging(lo, hi, len(s.pages), key, func(param, cursor string) string {
		return link(cl.base+"me/accounts", cl.q, param, cursor)
	}); pg != nil {
		out["paging"] = pg
	}
	return out, nil
}

func (s *Sim) conversations(cl *call, p *page, fs []field) (any, error) {
	limit, err := limitParam(cl.q, maxThreadLimit)
	if err != nil {
		return nil, err
	}
	if len(fs) == 0 {
		fs = []field{{name: "id"}, {name: "link"}, {name: "updated_time"}}
	}
	if s.cfg.MaxExpansion > 0 {
		for _, f := range fs {
			nested := f.limit
			if nested == 0 {
				nested = defaultLimit
			}
			if f.name == "messages" && limit*nested > s.cfg.MaxExpansion {
				return nil, errTooMuchData()
			}
		}
	}
	convs := p.convs
	switch plat := cl.q.Get("platform"); plat {
	case "", "messenger":
	case "instagram":
		convs = nil
	default:
		return nil, errParam("Param platform must be one of {MESSENGER, INSTAGRAM}")
	}
	folder := cl.q.Get("folder")
	switch folder {
	case "":
		folder = FolderInbox
	case FolderInbox, FolderOther, FolderDone, FolderSpam:
	default:
		return nil, errParam("Param folder must be one of {%s}", strings.ToUpper(strings.Join(Folders(), ", ")))
	}
	convs = inFolder(convs, folder)
	if psid := cl.q.Get("user_id"); psid != "" {
		convs = nil
		if c := p.byPSID[psid]; c != nil && c.folder == folder {
			convs = []*conv{c}
		}
	}
	key := func(i int) cursorKey { return convs[i].key() }
	lo, hi, err := window(len(convs), key, limit, cl.q.Get("after"), cl.q.Get("before"))
	if err != nil {
		return nil, errParam("Invalid cursor")
	}
	data := make([]map[string]any, 0, hi-lo)
	for _, c := range convs[lo:hi] {
		v, err := s.renderConv(cl, c, fs)
		if err != nil {
			return nil, err
		}
		data = append(data, v)
	}
	out := map[string]any{"data": data}
	if pg := paging(lo, hi, len(convs), key, func(param, cursor string) string {
		return link(cl.base+p.ID+"/conversations", cl.q, param, cursor)
	}); pg != nil {
		out["paging"] = pg
	}
	return out, nil
}

// inFolder keeps the threads of one folder, in order.
func inFolder(convs []*conv, folder string) []*conv {
	out := make([]*conv, 0, len(convs))
	for _, c := range convs {
		if c.folder == folder {
			out = append(out, c)
		}
	}
	return out
}

// messagesEdge lists a thread's messages newest first; messages older than the 20 newest
// carry only id and created_time.
func (s *Sim) messagesEdge(cl *call, c *conv, fs []field, limit int, after, before string,
	linkf func(param, cursor string) string) (map[string]any, error) {
	n := len(c.msgs)
	key := func(j int) cursorKey { return msgKey(c.newest(j)) }
	lo, hi, err := window(n, key, limit, after, before)
	if err != nil {
		return nil, errParam("Invalid cursor")
	}
	data := make([]rawJSON, 0, hi-lo)
	for j := lo; j < hi; j++ {
		v, err := s.renderMessage(cl, c, c.newest(j), j < readableRecent, fs)
		if err != nil {
			return nil, err
		}
		data = append(data, v)
	}
	out := map[string]any{"data": data}
	if pg := paging(lo, hi, n, key, linkf); pg != nil {
		out["paging"] = pg
	}
	return out, nil
}

func party(id, name string) map[string]any {
	return map[string]any{"id": id, "name": name, "email": id + "@facebook.com"}
}

func (s *Sim) renderConv(cl *call, c *conv, fs []field) (map[string]any, error) {
	if len(fs) == 0 {
		fs = []field{{name: "id"}, {name: "link"}, {name: "updated_time"}}
	}
	participants := func() map[string]any {
		return map[string]any{"data": []map[string]any{party(c.user.PSID, c.user.Name), party(c.page.ID, c.page.Name)}}
	}
	out := map[string]any{"id": c.id}
	for _, f := range fs {
		switch f.name {
		case "id":
		case "updated_time":
			out[f.name] = cl.time(c.updated())
		case "message_count":
			out[f.name] = len(c.msgs)
		case "unread_count":
			out[f.name] = c.unread()
		case "snippet":
			out[f.name] = c.snippet()
		case "link":
			out[f.name] = "/" + c.page.ID + "/inbox/" + strings.TrimPrefix(c.id, "t_") + "/"
		case "can_reply", "is_subscribed":
			out[f.name] = true
		case "scoped_thread_key":
			out[f.name] = c.id
		case "folder":
			out[f.name] = c.folder
		case "participants", "senders":
			out[f.name] = project(participants(), f.sub)
		case "former_participants":
			out[f.name] = map[string]any{"data": []map[string]any{}}
		case "messages":
			limit := defaultLimit
			if f.limit > 0 {
				limit = min(f.limit, maxMessageLimit)
			}
			v := url.Values{"access_token": {cl.q.Get("access_token")}, "limit": {strconv.Itoa(limit)}}
			if f.raw != "" {
				v.Set("fields", f.raw)
			}
			if cl.dateU {
				v.Set("date_format", "U")
			}
			e, err := s.messagesEdge(cl, c, f.sub, limit, "", "", func(param, cursor string) string {
				return link(cl.base+c.id+"/messages", v, param, cursor)
			})
			if err != nil {
				return nil, err
			}
			out[f.name] = e
		default:
			return nil, errNoField(f.name, "Conversation")
		}
	}
	return out, nil
}

// rawJSON is a JSON value encoded already; marshal writes it as it is.
type rawJSON []byte

// renderMessage encodes a message as marshal encodes the object of its selected fields
// (keys sorted), without building the object: a backfill's listing holds 20 messages a
// thread, and the simulator's CPU is time the client waits that Meta's would not make it
// wait. Messages older than the readable ones have id and created_time alone.
func (s *Sim) renderMessage(cl *call, c *conv, m *Message, readable bool, fs []field) (rawJSON, error) {
	if len(fs) == 0 {
		fs = []field{{name: "id"}, {name: "created_time"}}
	}
	// The keys, each with its (last) selection, as assigning them to a map would leave them.
	var buf [8]messageKey
	keys := append(buf[:0], messageKey{name: "id"})
	for i := range fs {
		f := &fs[i]
		switch f.name {
		case "id", "created_time":
		case "from", "to", "message", "tags":
			if !readable {
				continue
			}
		case "attachments":
			if !readable || len(m.Attachments) == 0 {
				continue
			}
		case "sticker", "shares", "reply_to", "story", "reactions", "is_unsupported":
			continue // known, never set in generated data
		default:
			return nil, errNoField(f.name, "Message")
		}
		if j := slices.IndexFunc(keys, func(k messageKey) bool { return k.name == f.name }); j >= 0 {
			keys[j].f = f
		} else {
			keys = append(keys, messageKey{name: f.name, f: f})
		}
	}
	slices.SortFunc(keys, func(a, b messageKey) int { return strings.Compare(a.name, b.name) })

	userID, userName, pageID, pageName := c.user.PSID, c.user.Name, c.page.ID, c.page.Name
	fromID, fromName, toID, toName := userID, userName, pageID, pageName
	if !m.Inbound {
		fromID, fromName, toID, toName = pageID, pageName, userID, userName
	}
	b := make([]byte, 0, 160)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k.name), ':')
		switch k.name {
		case "id":
			b = appendString(b, m.ID)
		case "created_time":
			if cl.dateU {
				b = strconv.AppendInt(b, m.CreatedTime.Unix(), 10)
			} else {
				b = append(b, '"')
				b = m.CreatedTime.UTC().AppendFormat(b, graphTimeLayout)
				b = append(b, '"')
			}
		case "from":
			b = appendParty(b, fromID, fromName, k.f.sub)
		case "message":
			b = appendString(b, m.Text)
		default: // to, attachments, tags: rare, built as objects
			var v any
			switch k.name {
			case "to":
				v = project(map[string]any{"data": []map[string]any{party(toID, toName)}}, k.f.sub)
			case "attachments":
				data := make([]map[string]any, len(m.Attachments))
				for i, a := range m.Attachments {
					data[i] = map[string]any{"id": a.ID, "mime_type": a.MimeType, "name": a.Name, "size": a.Size,
						"image_data": map[string]any{"url": a.URL, "preview_url": a.PreviewURL, "width": a.Width,
							"height": a.Height, "max_width": a.Width, "max_height": a.Height}}
				}
				v = project(map[string]any{"data": data}, k.f.sub)
			case "tags":
				tags := []map[string]any{{"name": "inbox"}, {"name": "source:chat"}}
				if !m.Inbound {
					tags = append(tags, map[string]any{"name": "sent"})
				}
				v = project(map[string]any{"data": tags}, k.f.sub)
			}
			var err error
			if b, err = appendJSON(b, v); err != nil {
				return nil, err
			}
		}
	}
	return append(b, '}'), nil
}

// messageKey is a key of a rendered message and its selection.
type messageKey struct {
	name string
	f    *field
}

// appendParty appends project(party(id, name), fs) as marshal encodes it.
func appendParty(b []byte, id, name string, fs []field) []byte {
	email, withName := len(fs) == 0, len(fs) == 0
	for _, f := range fs {
		switch f.name {
		case "name":
			withName = true
		case "email":
			email = true
		}
	}
	b = append(b, '{')
	if email {
		b = append(appendString(append(b, `"email":`...), id+"@facebook.com"), ',')
	}
	b = appendString(append(b, `"id":`...), id)
	if withName {
		b = appendString(append(b, `,"name":`...), name)
	}
	return append(b, '}')
}

func (s *Sim) renderUser(c *conv, fs []field) (map[string]any, error) {
	if len(fs) == 0 {
		fs = []field{{name: "first_name"}, {name: "last_name"}, {name: "profile_pic"}}
	}
	all := map[string]any{"id": c.user.PSID, "name": c.user.Name, "first_name": c.user.FirstName,
		"last_name":   c.user.LastName,
		"profile_pic": "https://platform-lookaside.fbsbx.com/platform/profilepic/?psid=" + c.user.PSID}
	for _, f := range fs {
		if _, ok := all[f.name]; !ok && f.name != "locale" && f.name != "timezone" && f.name != "gender" {
			return nil, errNoField(f.name, "User")
		}
	}
	return project(all, fs).(map[string]any), nil
}

func (s *Sim) renderPage(p *page, fs []field, withToken bool) (map[string]any, error) {
	if len(fs) == 0 {
		if withToken {
			fs = []field{{name: "access_token"}, {name: "category"}, {name: "category_list"}, {name: "name"},
				{name: "tasks"}}
		} else {
			fs = []field{{name: "name"}}
		}
	}
	all := map[string]any{"id": p.ID, "name": p.Name, "category": p.Category,
		"category_list": []map[string]any{{"id": "2200", "name": p.Category}},
		"link":          "https://www.facebook.com/" + p.ID}
	if withToken {
		all["access_token"] = p.AccessToken
		all["tasks"] = []string{"ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"}
	}
	for _, f := range fs {
		if _, ok := all[f.name]; !ok && f.name != "access_token" && f.name != "tasks" {
			return nil, errNoField(f.name, "Page")
		}
	}
	return project(all, fs).(map[string]any), nil
}
