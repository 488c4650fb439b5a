package cdc

import (
	"strings"
	"testing"

	"github.com/sessionguard/sessionguard/internal/session"
)

// FuzzDecode fails when the decoder's panic recovery fires: every malformed
// message must be caught by an explicit check, so that a parser change that
// starts allocating or reading past the message is found here rather than in
// production.
func FuzzDecode(f *testing.F) {
	h1, h2 := session.HashToken("one"), session.HashToken("two")
	for _, m := range [][]byte{
		relationMsg(7, "sessions", sessionsColumns),
		relationMsgIn(11, "other", "sessions", sessionsColumns),
		insertMsg(7, h1, future),
		updateMsg(7, 0, nil, row(h1, future, nil)),
		updateMsg(7, 'K', keyTuple(h1), row(h2, future, s("2026-06-01 00:00:00+00"))),
		updateMsg(7, 'O', row(h1, past, nil), row(h1, future, nil)),
		deleteMsg(7, h1),
		truncateMsg(7),
		truncateMsg(9, 7),
		beginMsg(0x2080, 100),
		commitMsg(0x2070, 0x2090),
		logicalMsg(true, 42, HeartbeatPrefix, []byte("v1|1780000000123|src|cat||1|2|3|4|00")),
		logicalMsg(false, 42, "p", nil),
		{'I', 0, 0, 0, 7, 'N', 0, 7, 't', 0, 0, 0, 200, 'a'},
		{'T', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 7},
		{'Z', 1, 2},
		{},
	} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		_, err := sessionsDecoder(t).Decode(msg)
		if err != nil && strings.Contains(err.Error(), "decoder panic") {
			t.Fatalf("message %q reached the panic recovery: %v", msg, err)
		}
	})
}
