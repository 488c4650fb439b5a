package cdc

import (
	"strings"
	"testing"
)

func TestSourceProblems(t *testing.T) {
	t.Parallel()
	good := sourceFacts{TableExists: true, Schema: "public", PubExists: true, PubAllOps: true, PubHasTable: true,
		ReplicaIdentity: "i", IdentityHasKey: true, Identity: "7412345678901234567/16384/16390"}
	with := func(f func(*sourceFacts)) sourceFacts { g := good; f(&g); return g }
	cases := []struct {
		name     string
		facts    sourceFacts
		decoding string
		want     [][]string // per problem, the words it must contain (its fix)
	}{
		{"all good", good, "public", nil},
		{"all good, not decoding yet", good, "", nil},
		{"table missing", with(func(f *sourceFacts) { *f = sourceFacts{Schema: "public"} }), "public",
			[][]string{{"no sessions table", "validator migrate", "search_path"}}},
		{"publication missing", with(func(f *sourceFacts) { f.PubExists, f.PubAllOps, f.PubHasTable = false, false, false }), "public",
			[][]string{{`publication "sg_pub" does not exist`, "validator migrate"}}},
		{"table not in publication", with(func(f *sourceFacts) { f.PubHasTable = false }), "public",
			[][]string{{`does not publish "public"."sessions"`, `ALTER PUBLICATION "sg_pub" ADD TABLE "public"."sessions"`}}},
		{"not all operations", with(func(f *sourceFacts) { f.PubAllOps = false }), "public",
			[][]string{{"insert, update, delete and truncate", `ALTER PUBLICATION "sg_pub" SET (publish = 'insert, update, delete, truncate')`}}},
		{"row filter or column list", with(func(f *sourceFacts) { f.PubFiltered = true }), "public",
			[][]string{{"row filter or column list", `ALTER PUBLICATION "sg_pub" DROP TABLE "public"."sessions"`, "validator migrate"}}},
		{"replica identity default without token_hash", with(func(f *sourceFacts) { f.ReplicaIdentity, f.IdentityHasKey = "d", false }), "public",
			[][]string{{"REPLICA IDENTITY DEFAULT", `ALTER TABLE "public"."sessions" REPLICA IDENTITY USING INDEX sessions_token_hash_key`}}},
		{"replica identity nothing", with(func(f *sourceFacts) { f.ReplicaIdentity, f.IdentityHasKey = "n", false }), "public",
			[][]string{{"REPLICA IDENTITY NOTHING", "REPLICA IDENTITY USING INDEX"}}},
		{"replica identity index without token_hash", with(func(f *sourceFacts) { f.IdentityHasKey = false }), "public",
			[][]string{{"REPLICA IDENTITY an index", "REPLICA IDENTITY USING INDEX"}}},
		{"bad columns", with(func(f *sourceFacts) { f.BadColumns = "token_hash bytea, revoked_at timestamp with time zone" }), "public",
			[][]string{{"token_hash bytea, revoked_at timestamp with time zone", "restore them", "migrations/"}}},
		{"schema moved", with(func(f *sourceFacts) { f.Schema = "b" }), "a",
			[][]string{{"decodes a.sessions", `"b"."sessions"`, "reconnects"}}},
		{"several at once", with(func(f *sourceFacts) {
			f.PubAllOps, f.PubFiltered, f.IdentityHasKey, f.ReplicaIdentity = false, true, false, "d"
		}), "public",
			[][]string{{"insert, update, delete and truncate"}, {"row filter"}, {"REPLICA IDENTITY USING INDEX"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.facts.problems(ownTable, "sg_pub", tc.decoding)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d", len(got), got, len(tc.want))
			}
			for i, words := range tc.want {
				for _, w := range words {
					if !strings.Contains(got[i], w) {
						t.Errorf("problem %d %q does not contain %q", i, got[i], w)
					}
				}
			}
		})
	}
}
