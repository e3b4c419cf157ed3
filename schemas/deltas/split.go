package deltas

// Split cuts d into parts that apply independently: the page's own fields, each
// conversation with its messages, each event kept as it is. Applying every part gives
// the rows that applying d gives (a delta is the join of its parts), so a consumer that
// cannot store one part can set it aside and apply the rest. Events and ReceivedMS go
// with the first part. A delta that is one part already comes back alone.
func Split(d Delta) []Delta {
	var out []Delta
	if d.PageName != "" || !d.PageNameAt.IsZero() || !d.LastSyncedAt.IsZero() {
		out = append(out, Delta{PageID: d.PageID, PageName: d.PageName, PageNameAt: d.PageNameAt, LastSyncedAt: d.LastSyncedAt})
	}
	for _, c := range d.Conversations {
		out = append(out, Delta{PageID: d.PageID, Conversations: []ConversationDelta{c}})
	}
	for _, o := range d.Others {
		out = append(out, Delta{PageID: d.PageID, Others: []Other{o}})
	}
	if len(out) == 0 {
		return []Delta{d}
	}
	out[0].Events, out[0].ReceivedMS = d.Events, d.ReceivedMS
	return out
}
