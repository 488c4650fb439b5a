package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkValidateHTTP measures a validation through the whole HTTP stack
// (client, server, middleware, service, Redis or Postgres) on loopback.
func BenchmarkValidateHTTP(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    envOpts
	}{
		{"cache_hit", envOpts{}},
		{"database_only", envOpts{noRedis: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.o)
			tok, _ := e.newSession(b, "", time.Hour)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			wantValid(b, e.validate(b, tok), "database") // the first one fills the cache
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", e.srv.URL+"/v1/sessions/validate", strings.NewReader(`{"token":"`+tok+`"}`))
					resp, err := client.Do(req)
					if err != nil || resp.StatusCode != 200 {
						b.Errorf("validate: %v %v", resp, err)
						return
					}
					resp.Body.Close()
				}
			})
		})
	}
}
