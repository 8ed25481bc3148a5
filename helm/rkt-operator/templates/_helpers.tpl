{{/* Names and labels shared by every object of the release. */}}

{{- define "rkt-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rkt-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rkt-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rkt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rkt-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rkt-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rkt-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rkt-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rkt-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
One agent setting as an environment variable value: lists are joined with commas (the agent
splits them again), everything else is its plain string form.
*/}}
{{- define "rkt-operator.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Non-empty when agent.namespaces holds a glob or a negation (the agent's own test, in
rkt_operator.kopfapp): kopf then watches Namespaces and CRDs. */}}
{{- define "rkt-operator.namespaceGlobs" -}}
{{- range .Values.agent.namespaces }}
{{- if regexMatch "[*?!]" . }}true{{ end }}
{{- end }}
{{- end }}

{{/* Non-empty when agent.namespaces is a non-empty list of plain names (no glob, no
negation): Secret and ConfigMap reads are then granted per namespace by Roles. */}}
{{- define "rkt-operator.namespaceRoles" -}}
{{- if and .Values.agent.namespaces (not (include "rkt-operator.namespaceGlobs" .)) }}true{{ end }}
{{- end }}

{{/* The port of an http://host:port/path endpoint (80 when it names none). */}}
{{- define "rkt-operator.endpointPort" -}}
{{- $url := urlParse . }}
{{- $parts := splitList ":" $url.host }}
{{- if gt (len $parts) 1 }}{{ last $parts }}{{ else }}80{{ end }}
{{- end }}

{{/* The liveness probe's port, from agent.livenessEndpoint. */}}
{{- define "rkt-operator.livenessPort" -}}
{{- include "rkt-operator.endpointPort" .Values.agent.livenessEndpoint }}
{{- end }}

{{/* The metrics port, from agent.metricsEndpoint. */}}
{{- define "rkt-operator.metricsPort" -}}
{{- include "rkt-operator.endpointPort" .Values.agent.metricsEndpoint }}
{{- end }}

{{/* The agent pod's annotations: prometheus.io/ scrape hints for the metrics endpoint (when
it is set and metrics.scrapeAnnotations), overridden by podAnnotations. */}}
{{- define "rkt-operator.podAnnotations" -}}
{{- $annotations := deepCopy .Values.podAnnotations }}
{{- if and .Values.agent.metricsEndpoint .Values.metrics.scrapeAnnotations }}
{{- $scrape := dict "prometheus.io/scrape" "true" "prometheus.io/port" (include "rkt-operator.metricsPort" .) "prometheus.io/path" ((urlParse .Values.agent.metricsEndpoint).path | default "/") }}
{{- $annotations = merge $annotations $scrape }}
{{- end }}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* The binder's pods: a name of their own, so the agents' DaemonSet selector (name +
instance) never matches them. */}}
{{- define "rkt-operator.binderSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rkt-operator.name" . }}-binder
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rkt-operator.binderLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rkt-operator.binderSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: binder
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The roles for kubectl rkt's users (templates/pluginroles.yaml). */}}
{{- define "rkt-operator.pluginLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "rkt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: kubectl-plugin
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
