package main

import "testing"

func TestParseValidations(t *testing.T) {
	t.Parallel()
	const text = `# HELP sessionguard_validations_total Token validations by result and source.
# TYPE sessionguard_validations_total counter
sessionguard_validations_total{result="invalid",source="cache"} 1
sessionguard_validations_total{result="invalid",source="token"} 2
sessionguard_validations_total{result="valid",source="cache"} 3
sessionguard_validations_total{result="valid",source="database"} 4
sessionguard_validation_duration_seconds_count{source="token"} 99
sessionguard_cache_hits_total 3
sessionguard_cache_misses_total 5
`
	got := parseValidations(text)
	want := map[string]float64{"token": 2, "cache": 4, "database": 4}
	for src, n := range want {
		if got.bySource[src] != n {
			t.Errorf("bySource[%s] = %v, want %v", src, got.bySource[src], n)
		}
	}
	if len(got.bySource) != len(want) || got.lookups != 8 {
		t.Errorf("parseValidations = %+v, want %v and 8 lookups", got, want)
	}
}
