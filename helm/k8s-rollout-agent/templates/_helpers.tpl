{{/*
Chart name, cut to 63 characters (the DNS-label limit of Kubernetes names).
*/}}
{{- define "k8s-rollout-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, cut to 63 characters. A release name that already contains the chart
name is used as is.
*/}}
{{- define "k8s-rollout-agent.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "k8s-rollout-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "k8s-rollout-agent.labels" -}}
helm.sh/chart: {{ include "k8s-rollout-agent.chart" . }}
{{ include "k8s-rollout-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ include "k8s-rollout-agent.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: decision-service
app.kubernetes.io/part-of: k8s-rollout-agent
{{- end }}

{{/*
Selector labels: stable for the life of a release (never add a version here).
*/}}
{{- define "k8s-rollout-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "k8s-rollout-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "k8s-rollout-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "k8s-rollout-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "k8s-rollout-agent.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Image reference: repository:tag, and @digest when image.digest is set (the runtime then pulls
by digest; the tag stays for people reading the manifest).
*/}}
{{- define "k8s-rollout-agent.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "k8s-rollout-agent.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Name of the Secret holding the bearer token: the user's existing Secret, else the chart's.
Fails the render when no token source was chosen: the chart never ships a default token.
*/}}
{{- define "k8s-rollout-agent.tokenSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if or .Values.auth.token .Values.auth.generateToken }}
{{- printf "%s-token" (include "k8s-rollout-agent.fullname" . | trunc 57 | trimSuffix "-") }}
{{- else }}
{{- fail "\n\nA bearer token is required and the chart ships none. Set one of:\n  --set auth.existingSecret=<secret with key 'token'>   (recommended)\n  --set auth.generateToken=true                           (random, kept across upgrades)\n  --set auth.token=<value>\n" }}
{{- end }}
{{- end }}

{{/*
Where the token file is mounted, and the file itself (API_TOKEN_FILE).
*/}}
{{- define "k8s-rollout-agent.tokenMountPath" -}}
/var/run/secrets/k8s-rollout-agent
{{- end }}

{{/*
Does the user supply a model (ConfigMap or volume)?
*/}}
{{- define "k8s-rollout-agent.customModel" -}}
{{- if or .Values.model.configMap .Values.model.volume }}true{{ end }}
{{- end }}

{{/*
Folder a user model is mounted in.
*/}}
{{- define "k8s-rollout-agent.modelMountPath" -}}
/models/custom
{{- end }}

{{/*
MODEL_PATH to set, or empty to keep the image's default (the shipped model).
*/}}
{{- define "k8s-rollout-agent.modelPath" -}}
{{- if .Values.model.path }}
{{- .Values.model.path }}
{{- else if include "k8s-rollout-agent.customModel" . }}
{{- printf "%s/%s" (include "k8s-rollout-agent.modelMountPath" .) .Values.model.fileName }}
{{- end }}
{{- end }}

{{/*
Name of the ClusterAnalysisTemplate.
*/}}
{{- define "k8s-rollout-agent.analysisTemplateName" -}}
{{- default (include "k8s-rollout-agent.fullname" .) .Values.analysisTemplate.name | trunc 253 }}
{{- end }}

{{/*
URL Argo Rollouts POSTs measurements to.
*/}}
{{- define "k8s-rollout-agent.decideUrl" -}}
{{- if .Values.analysisTemplate.url }}
{{- .Values.analysisTemplate.url }}
{{- else }}
{{- printf "http://%s.%s.svc:%v/v1/decide" (include "k8s-rollout-agent.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}
