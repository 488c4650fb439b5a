{{/* Chart name, overridable. */}}
{{- define "sessionguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, with the chart's name appended unless the
release name already contains it. Component names append "-validator" or
"-invalidator", so it is cut at 50 characters to keep those within 63.
*/}}
{{- define "sessionguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sessionguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; (dict "root" $ "component" "validator"). */}}
{{- define "sessionguard.labels" -}}
helm.sh/chart: {{ include "sessionguard.chart" .root }}
{{ include "sessionguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sessionguard
{{- end }}

{{/* Selector labels of one component; (dict "root" $ "component" "validator"). */}}
{{- define "sessionguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessionguard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "sessionguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessionguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image of a component; (dict "root" $ "tag" component's imageTag). */}}
{{- define "sessionguard.image" -}}
{{- $tag := .tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" .root.Values.image.repository (toString $tag) }}
{{- end }}

{{/* The sources SESSION_SOURCE accepts. */}}
{{- define "sessionguard.sources" -}}
sessionguard supabase better-auth kratos connect-pg-simple django lucia table
{{- end }}

{{/* Whether the validator needs SESSION_COOKIE_SECRET ("true" or ""). */}}
{{- define "sessionguard.needsCookieSecret" -}}
{{- $c := .Values.config }}
{{- if or (has $c.source (list "better-auth" "connect-pg-simple")) (and (eq $c.source "table") (eq (toString $c.table.keyFormat) "signed")) }}true{{ end }}
{{- end }}

{{/*
Checks the values; fails rendering with a message naming the value to fix.
Included by every template that renders a pod.
*/}}
{{- define "sessionguard.validate" -}}
{{- $v := .Values }}
{{- if not $v.existingSecret }}
{{- fail "existingSecret is required: the name of a Secret in the release's namespace holding DATABASE_URL and REDIS_URL (and ADMIN_TOKEN, JWT_SECRET, SESSION_COOKIE_SECRET as the source needs; key names in secretKeys). Create it first, then --set existingSecret=NAME." }}
{{- end }}
{{- if not $v.secretKeys.databaseUrl }}
{{- fail "secretKeys.databaseUrl must name the key of DATABASE_URL in existingSecret" }}
{{- end }}
{{- if not $v.secretKeys.redisUrl }}
{{- fail "secretKeys.redisUrl must name the key of REDIS_URL in existingSecret (the invalidator needs Redis)" }}
{{- end }}
{{- $sources := splitList " " (include "sessionguard.sources" .) }}
{{- if not (has $v.config.source $sources) }}
{{- fail (printf "config.source %q is not one of %s" (toString $v.config.source) (join ", " $sources)) }}
{{- end }}
{{- $table := false }}
{{- range $k, $val := $v.config.table }}{{ if $val }}{{ $table = true }}{{ end }}{{ end }}
{{- if eq $v.config.source "table" }}
{{- if or (not $v.config.table.name) (not $v.config.table.key) }}
{{- fail "config.source table needs config.table.name (SESSION_TABLE) and config.table.key (SESSION_TABLE_KEY)" }}
{{- end }}
{{- else if $table }}
{{- fail (printf "config.table is set but config.source is %s: the SESSION_TABLE_* settings describe config.source table only" $v.config.source) }}
{{- end }}
{{- if and (include "sessionguard.needsCookieSecret" .) (not $v.secretKeys.sessionCookieSecret) }}
{{- fail (printf "config.source %s needs SESSION_COOKIE_SECRET: set secretKeys.sessionCookieSecret to its key in existingSecret" $v.config.source) }}
{{- end }}
{{- $reserved := list "LISTEN_ADDR" "DATABASE_URL" "REDIS_URL" "ADMIN_TOKEN" "JWT_SECRET" "SESSION_COOKIE_SECRET" }}
{{- $typed := keys (include "sessionguard.typedSettings" (dict "root" . "process" "all") | fromYaml) }}
{{- range $where, $m := dict "env" $v.env "validator.env" $v.validator.env "invalidator.env" $v.invalidator.env }}
{{- range $name, $_ := $m }}
{{- if not (regexMatch "^[A-Z][A-Z0-9_]*$" $name) }}
{{- fail (printf "%s: %q is not a setting's name (upper case, digits and _)" $where $name) }}
{{- end }}
{{- if has $name $reserved }}
{{- fail (printf "%s.%s: set it through %s" $where $name (ternary "validator.port / invalidator.port" "existingSecret and secretKeys" (eq $name "LISTEN_ADDR"))) }}
{{- end }}
{{- if has $name $typed }}
{{- fail (printf "%s.%s is also set by a config value (config.*); set it in one place" $where $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The settings set by config.*, as a YAML map NAME: "value", for
(dict "root" $ "process" P): P is "validator" (also migrate), "invalidator"
or "all" (both, for the checks). Empty values are left out.
*/}}
{{- define "sessionguard.typedSettings" -}}
{{- $c := .root.Values.config }}
{{- $p := .process }}
{{- $all := eq $p "all" }}
{{- $m := dict }}
{{- $common := dict "SESSION_SOURCE" $c.source "PUBLICATION" $c.publication "REDIS_KEY_PREFIX" $c.redisKeyPrefix "LOG_LEVEL" $c.logLevel "SESSION_TIMESTAMP_ZONE" $c.timestampZone "SHUTDOWN_TIMEOUT" $c.shutdownTimeout }}
{{- $t := $c.table }}
{{- $_ := merge $common (dict "SESSION_TABLE" $t.name "SESSION_TABLE_KEY" $t.key "SESSION_TABLE_KEY_FORMAT" $t.keyFormat "SESSION_TABLE_ID" $t.id "SESSION_TABLE_USER" $t.user "SESSION_TABLE_CREATED" $t.created "SESSION_TABLE_EXPIRES" $t.expires "SESSION_TABLE_REVOKED" $t.revoked "SESSION_TABLE_ACTIVE" $t.active "SESSION_TABLE_LAST_ACTIVE" $t.lastActive) }}
{{- $sets := list $common }}
{{- if or $all (eq $p "validator") }}
{{- $sets = append $sets (dict "MAX_STALENESS" $c.maxStaleness "SESSION_CACHE_TTL" $c.cacheTTL "JWKS_URL" $c.jwksUrl) }}
{{- end }}
{{- if or $all (eq $p "invalidator") }}
{{- $sets = append $sets (dict "REPLICATION_SLOT" $c.replicationSlot "HEARTBEAT_INTERVAL" $c.heartbeatInterval "INSPECT_GRACE" $c.maxStaleness) }}
{{- end }}
{{- range $s := $sets }}
{{- range $k, $val := $s }}
{{- if and (ne (toString $val) "") (ne (toString $val) "<nil>") }}
{{- $_ := set $m $k (toString $val) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $m }}
{{- end }}

{{/*
The env list of a container; (dict "root" $ "process" P) with P "validator",
"migrate" or "invalidator": the config.* settings, then env, then the
process's own env map (validator.env for the validator and migrate), sorted
by name, then LISTEN_ADDR and the secrets.
*/}}
{{- define "sessionguard.env" -}}
{{- $v := .root.Values }}
{{- $p := .process }}
{{- $typedFor := ternary "invalidator" "validator" (eq $p "invalidator") }}
{{- $m := include "sessionguard.typedSettings" (dict "root" .root "process" $typedFor) | fromYaml }}
{{- range $k, $val := $v.env }}{{ $_ := set $m $k (toString $val) }}{{ end }}
{{- $own := ternary $v.invalidator.env $v.validator.env (eq $p "invalidator") }}
{{- range $k, $val := $own }}{{ $_ := set $m $k (toString $val) }}{{ end }}
{{- range $k := keys $m | sortAlpha }}
- name: {{ $k }}
  value: {{ get $m $k | quote }}
{{- end }}
{{- if eq $p "validator" }}
- name: LISTEN_ADDR
  value: {{ printf ":%v" $v.validator.port | quote }}
{{- else if eq $p "invalidator" }}
- name: LISTEN_ADDR
  value: {{ printf ":%v" $v.invalidator.port | quote }}
{{- end }}
{{- include "sessionguard.secretEnv" (dict "name" "DATABASE_URL" "key" $v.secretKeys.databaseUrl "secret" $v.existingSecret) }}
{{- if ne $p "migrate" }}
{{- include "sessionguard.secretEnv" (dict "name" "REDIS_URL" "key" $v.secretKeys.redisUrl "secret" $v.existingSecret) }}
{{- end }}
{{- if eq $p "validator" }}
{{- if $v.secretKeys.adminToken }}
{{- include "sessionguard.secretEnv" (dict "name" "ADMIN_TOKEN" "key" $v.secretKeys.adminToken "secret" $v.existingSecret "optional" true) }}
{{- end }}
{{- if and (eq $v.config.source "supabase") $v.secretKeys.jwtSecret }}
{{- include "sessionguard.secretEnv" (dict "name" "JWT_SECRET" "key" $v.secretKeys.jwtSecret "secret" $v.existingSecret "optional" true) }}
{{- end }}
{{- if include "sessionguard.needsCookieSecret" .root }}
{{- include "sessionguard.secretEnv" (dict "name" "SESSION_COOKIE_SECRET" "key" $v.secretKeys.sessionCookieSecret "secret" $v.existingSecret) }}
{{- end }}
{{- end }}
{{- end }}

{{/* One env entry from the existing Secret. */}}
{{- define "sessionguard.secretEnv" }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | quote }}
      key: {{ .key | quote }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/*
topologySpreadConstraints of a component; a constraint without a
labelSelector gets the component's selector labels.
(dict "root" $ "component" C "constraints" list)
*/}}
{{- define "sessionguard.topologySpread" -}}
{{- $out := list }}
{{- range $c := .constraints }}
{{- $c := deepCopy $c }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "sessionguard.selectorLabels" (dict "root" $.root "component" $.component) | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}
