package deltas

import "time"

// MergeMessage merges b into a: the rules of the messages table.
//   - content (direction, sent_at, attachments, app_id, reply_to_mid) from the higher
//     ContentSource; on a tie the existing value stays unless it is empty;
//   - text: with edits, the text of the highest edit_count; without, the content's
//     (higher source wins; a tie keeps the greater text, so the order never matters);
//   - reactions per user: MergeReactions.
func MergeMessage(a *MessageDelta, b MessageDelta) {
	switch {
	case b.EditCount > a.EditCount:
		a.Text = b.Text
	case b.EditCount < a.EditCount:
	case a.EditCount > 0:
		a.Text = maxString(a.Text, b.Text)
	case b.ContentSource > a.ContentSource:
		a.Text = b.Text
	case b.ContentSource == a.ContentSource:
		a.Text = maxString(a.Text, b.Text)
	}
	a.EditCount = max(a.EditCount, b.EditCount)
	switch {
	case b.ContentSource > a.ContentSource:
		a.ContentSource, a.Direction, a.SentAt, a.Attachments, a.AttachmentsKey, a.AppID, a.ReplyToMID =
			b.ContentSource, b.Direction, b.SentAt, b.Attachments, b.AttachmentsKey, b.AppID, b.ReplyToMID
	case b.ContentSource == a.ContentSource && b.ContentSource > SourceNone:
		a.Direction = maxString(a.Direction, b.Direction)
		a.SentAt = maxTime(a.SentAt, b.SentAt)
		if b.AttachmentsKey > a.AttachmentsKey {
			a.Attachments, a.AttachmentsKey = b.Attachments, b.AttachmentsKey
		}
		a.AppID = maxString(a.AppID, b.AppID)
		a.ReplyToMID = maxString(a.ReplyToMID, b.ReplyToMID)
	}
	MergeReactions(&a.Reactions, b.Reactions)
}

// MergeReactions merges b into *a per user: the later reaction wins; at the same time,
// the greater (action, reaction) wins.
func MergeReactions(a *map[string]Reaction, b map[string]Reaction) {
	for user, r := range b {
		if *a == nil {
			*a = map[string]Reaction{}
		}
		cur, ok := (*a)[user]
		if !ok || reactionLess(cur, r) {
			(*a)[user] = r
		}
	}
}

func reactionLess(x, y Reaction) bool {
	if !x.At.Equal(y.At) {
		return x.At.Before(y.At)
	}
	if x.Action != y.Action {
		return x.Action < y.Action
	}
	return x.Reaction < y.Reaction
}

// MergeConversation merges b's summary fields into a (not its messages): watermarks and
// last outbound time are running maxima, the latest message is the greatest (time, mid),
// the snapshot is the one with the latest updated time (then the greater counts).
func MergeConversation(a *ConversationDelta, b ConversationDelta) {
	a.ReadWatermark = maxTime(a.ReadWatermark, b.ReadWatermark)
	a.DeliveryWatermark = maxTime(a.DeliveryWatermark, b.DeliveryWatermark)
	a.LastOutboundAt = maxTime(a.LastOutboundAt, b.LastOutboundAt)
	if b.LastMID != "" && later(b.LastAt, b.LastMID, a.LastAt, a.LastMID) {
		a.LastAt, a.LastMID, a.LastDirection = b.LastAt, b.LastMID, b.LastDirection
	}
	if b.Snapshot != nil && (a.Snapshot == nil || snapshotLess(*a.Snapshot, *b.Snapshot)) {
		s := *b.Snapshot
		a.Snapshot = &s
	}
	if b.ParticipantName != "" && later(b.ParticipantNameAt, b.ParticipantName, a.ParticipantNameAt, a.ParticipantName) {
		a.ParticipantName, a.ParticipantNameAt = b.ParticipantName, b.ParticipantNameAt
	}
	a.ThreadID = maxString(a.ThreadID, b.ThreadID)
}

func snapshotLess(x, y Snapshot) bool {
	switch {
	case !x.UpdatedTime.Equal(y.UpdatedTime):
		return x.UpdatedTime.Before(y.UpdatedTime)
	case x.MessageCount != y.MessageCount:
		return x.MessageCount < y.MessageCount
	case x.UnreadCount != y.UnreadCount:
		return x.UnreadCount < y.UnreadCount
	}
	return x.Snippet < y.Snippet
}

// later reports whether (t1, s1) > (t2, s2).
func later(t1 time.Time, s1 string, t2 time.Time, s2 string) bool {
	if !t1.Equal(t2) {
		return t1.After(t2)
	}
	return s1 > s2
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func maxString(a, b string) string {
	if b > a {
		return b
	}
	return a
}
