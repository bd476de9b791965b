{{/*
Names, labels and the derived settings every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "toloka-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's resources: fullnameOverride, else
<release>-<name>, else <release> when it already contains the name. */}}
{{- define "toloka-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "toloka-bridge.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "toloka-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the bridge pod: name and instance only, so they never
change on upgrade (a Deployment's selector is immutable). */}}
{{- define "toloka-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "toloka-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every resource carries, minus name/component (see componentLabels). */}}
{{- define "toloka-bridge.baseLabels" -}}
helm.sh/chart: {{ include "toloka-bridge.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/part-of: toloka-bridge
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Full labels of a resource of the bridge; call with (dict "root" $ "component" "bridge"). */}}
{{- define "toloka-bridge.labels" -}}
{{ include "toloka-bridge.baseLabels" .root }}
app.kubernetes.io/name: {{ include "toloka-bridge.name" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "toloka-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "toloka-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is pinned. */}}
{{- define "toloka-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the credentials: the existing one, or the chart's. */}}
{{- define "toloka-bridge.secretName" -}}
{{- default (include "toloka-bridge.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "toloka-bridge.usesSasl" -}}
{{- if hasPrefix "SASL" .Values.config.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "toloka-bridge.usesTls" -}}
{{- if has .Values.config.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* Where the pod sees its files (fixed names, whatever the keys in the Secrets
are called). The config path is the image's default CMD. */}}
{{- define "toloka-bridge.configDir" -}}/etc/toloka-bridge{{- end }}
{{- define "toloka-bridge.secretDir" -}}/etc/toloka-bridge/secrets{{- end }}
{{- define "toloka-bridge.tlsDir" -}}/etc/toloka-bridge/kafka-tls{{- end }}

{{/* Seconds the kubelet waits after SIGTERM; must leave the cycle in flight its
grace period plus time to close the HTTP server (5 s) and the producer. */}}
{{- define "toloka-bridge.terminationGracePeriodSeconds" -}}
{{- $grace := .Values.config.poll.shutdownGraceSeconds | float64 }}
{{- with .Values.terminationGracePeriodSeconds }}
{{- if le (. | float64) $grace }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.poll.shutdownGraceSeconds (%v), or the pod is killed mid-cycle" . $grace) }}
{{- end }}
{{- . }}
{{- else }}
{{- add (ceil $grace | int) 15 }}
{{- end }}
{{- end }}

{{/* The settings as TOML tables, snake_case keys, in a fixed order. Values come from
.Values.config (null values are left out); the chart adds the paths of the files it
mounts and the derived transactional id. Strings and lists are written as JSON,
which is valid TOML for them. */}}
{{- define "toloka-bridge.settings" -}}
{{- $settings := dict }}
{{- range $section, $values := .Values.config }}
{{- $table := dict }}
{{- range $key, $value := $values }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $table (snakecase $key) $value }}
{{- end }}
{{- end }}
{{- $_ := set $settings $section $table }}
{{- end }}
{{- $toloka := get $settings "toloka" }}
{{- $_ := set $toloka "api_key_file" (printf "%s/toloka-api-key" (include "toloka-bridge.secretDir" .)) }}
{{- $kafka := get $settings "kafka" }}
{{- if not $kafka.transactional_id }}
{{- $_ := set $kafka "transactional_id" (printf "%s.%s" .Release.Namespace (include "toloka-bridge.fullname" .)) }}
{{- end }}
{{- if include "toloka-bridge.usesSasl" . }}
{{- $_ := set $kafka "sasl_password_file" (printf "%s/kafka-sasl-password" (include "toloka-bridge.secretDir" .)) }}
{{- end }}
{{- if .Values.kafkaTls.existingSecret }}
{{- $tlsDir := include "toloka-bridge.tlsDir" . }}
{{- $_ := set $kafka "ssl_cafile" (printf "%s/ca.crt" $tlsDir) }}
{{- if .Values.kafkaTls.certKey }}
{{- $_ := set $kafka "ssl_certfile" (printf "%s/tls.crt" $tlsDir) }}
{{- $_ := set $kafka "ssl_keyfile" (printf "%s/tls.key" $tlsDir) }}
{{- end }}
{{- end }}
{{- range $section := list "toloka" "poll" "kafka" "http" "log" }}
[{{ $section }}]
{{- range $key, $value := get $settings $section }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{ end }}
{{- end }}

{{/* Checks of combinations the schema cannot express; each fails with a message
naming the values to change. */}}
{{- define "toloka-bridge.validate" -}}
{{- $auth := .Values.auth }}
{{- if and $auth.existingSecret (or $auth.tolokaApiKey $auth.kafkaSaslPassword) }}
{{- fail "auth.existingSecret is set: leave auth.tolokaApiKey and auth.kafkaSaslPassword empty (the keys come from that Secret)" }}
{{- end }}
{{- $sasl := include "toloka-bridge.usesSasl" . }}
{{- if and $sasl (not $auth.existingSecret) (not $auth.kafkaSaslPassword) }}
{{- fail (printf "config.kafka.securityProtocol is %s: set auth.kafkaSaslPassword or auth.existingSecret" .Values.config.kafka.securityProtocol) }}
{{- end }}
{{- if and (not $sasl) $auth.kafkaSaslPassword }}
{{- fail "auth.kafkaSaslPassword is set but config.kafka.securityProtocol is not SASL_PLAINTEXT or SASL_SSL" }}
{{- end }}
{{- if and .Values.kafkaTls.existingSecret (not (include "toloka-bridge.usesTls" .)) }}
{{- fail "kafkaTls.existingSecret is set but config.kafka.securityProtocol is not SSL or SASL_SSL" }}
{{- end }}
{{- if and .Values.kafkaTls.certKey (not .Values.kafkaTls.keyKey) }}
{{- fail "kafkaTls.certKey needs kafkaTls.keyKey (the client private key)" }}
{{- end }}
{{- if and .Values.kafkaTls.keyKey (not .Values.kafkaTls.certKey) }}
{{- fail "kafkaTls.keyKey needs kafkaTls.certKey (the client certificate)" }}
{{- end }}
{{- end }}
