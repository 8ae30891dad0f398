{{- define "infusion-charges.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "infusion-charges.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "infusion-charges.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infusion-charges.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "infusion-charges.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "infusion-charges.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "infusion-charges.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "infusion-charges.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The topic names the worker uses, as YAML: the defaults of connectors/settings.Topics (tests/test_helm.py
keeps them equal) with worker.topics' overrides.
*/}}
{{- define "infusion-charges.topics" -}}
{{- $defaults := dict
  "fhir_administrations" "fhir.medication-administration"
  "fhir_encounters" "fhir.encounter"
  "hl7_ras" "hl7v2.ras"
  "hl7_adt" "hl7v2.adt"
  "fhir_medications" "fhir.medication"
  "charges" "billing.charge-items"
  "dead_letter" "infusion-charges.dead-letter"
  "events" "infusion-charges.events"
  "state" "infusion-charges.state" -}}
{{- toYaml (merge (dict) (.Values.worker.topics | default dict) $defaults) -}}
{{- end -}}

{{/* The topics the worker's consumer group reads (Topics.inputs() and the events topic), in that order. */}}
{{- define "infusion-charges.groupTopicKeys" -}}
{{- toYaml (list "fhir_administrations" "fhir_encounters" "hl7_ras" "hl7_adt" "events") -}}
{{- end -}}

{{/* The formulary's ConfigMap, or nothing when the worker uses the bundled formulary. */}}
{{- define "infusion-charges.formularyConfigMap" -}}
{{- $f := .Values.worker.formulary -}}
{{- if $f.existingConfigMap.name -}}
{{- $f.existingConfigMap.name -}}
{{- else if $f.content -}}
{{- include "infusion-charges.fullname" . }}-formulary
{{- end -}}
{{- end -}}

{{/* The formulary's key in that ConfigMap (and its file name): inline JSON (or a mapping) is .json, other text .yaml. */}}
{{- define "infusion-charges.formularyKey" -}}
{{- $f := .Values.worker.formulary -}}
{{- if $f.existingConfigMap.name -}}
{{- $f.existingConfigMap.key -}}
{{- else if and (kindIs "string" $f.content) (not (hasPrefix "{" (trim $f.content))) -}}
formulary.yaml
{{- else -}}
formulary.json
{{- end -}}
{{- end -}}

{{/*
Settings the chart renders into worker.yaml or sets in the environment: extraEnv may not set
INFUSION_CHARGES_<one of them> (nested ones included), which would silently override the values.
*/}}
{{- define "infusion-charges.renderedSettings" -}}
{{- toYaml (list "bootstrap_servers" "group_id" "client_id" "timezone" "partitions" "replication_factor" "create_topics"
  "idle_close_minutes" "retention_days" "delivery" "session_timeout_ms" "max_poll_interval_ms" "fetch_min_bytes" "state_dir"
  "shutdown_timeout_s" "liveness_timeout_s" "log_level" "kafka_log_level" "profile" "formulary" "metrics_port"
  "topics" "security" "log_id_key") -}}
{{- end -}}
