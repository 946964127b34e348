{{/* The release's name, unless it already says pitcrew. */}}
{{- define "pitcrew.fullname" -}}
{{- if contains "pitcrew" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pitcrew" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The ground rule: everything of Pitcrew carries appId: pitcrew. */}}
{{- define "pitcrew.selectorLabels" -}}
app.kubernetes.io/name: pitcrew
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pitcrew.labels" -}}
appId: pitcrew
{{ include "pitcrew.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pitcrew.secretName" -}}
{{- default (printf "%s-secrets" (include "pitcrew.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* Redis ports the pods may reach, by topology (or as listed). */}}
{{- define "pitcrew.redisPorts" -}}
{{- if .Values.redis.ports -}}
{{- toJson .Values.redis.ports -}}
{{- else if eq .Values.redis.topology "sentinel" -}}
[26379, 6379]
{{- else -}}
[6379]
{{- end -}}
{{- end -}}

{{/* Checks of the values that a template can make, so that a mistake fails at render. */}}
{{- define "pitcrew.validate" -}}
{{- if not (has .Values.redis.topology (list "standalone" "sentinel" "cluster")) -}}
{{- fail (printf "redis.topology must be standalone, sentinel or cluster, not %q" .Values.redis.topology) -}}
{{- end -}}
{{- if and (not .Values.redis.external) (gt (int .Values.replicaCount) 1) -}}
{{- fail "the embedded Redis serves one replica only: set redis.external (and REDIS_URL) or replicaCount: 1" -}}
{{- end -}}
{{- with .Values.redis.url -}}
{{- $scheme := index (splitList "://" .) 0 -}}
{{- $want := dict "standalone" (list "redis" "rediss" "unix") "sentinel" (list "redis+sentinel") "cluster" (list "redis+cluster") -}}
{{- if not (has $scheme (get $want $.Values.redis.topology)) -}}
{{- fail (printf "redis.url's scheme %s:// does not fit redis.topology %s" $scheme $.Values.redis.topology) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.existingSecret) (not .Values.secrets) -}}
{{- fail "set existingSecret (the Secret with SLACK_BOT_TOKEN, GITLAB_TOKEN, …) or secrets" -}}
{{- end -}}
{{- end -}}
