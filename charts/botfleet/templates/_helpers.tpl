{{/* Chart name, overridable. */}}
{{- define "botfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". 63 characters at most (DNS label).
*/}}
{{- define "botfleet.fullname" -}}
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

{{- define "botfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "botfleet.labels" -}}
helm.sh/chart: {{ include "botfleet.chart" . }}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: botfleet
{{- end }}

{{/* Labels that select the operator pods; part of the Deployment selector, so never change them. */}}
{{- define "botfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "botfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The admin role (`bot-runtime admin`): its own component, so its pods are never selected
as operator pods and the other way round. */}}
{{- define "botfleet.adminFullname" -}}
{{- printf "%s-admin" (include "botfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "botfleet.adminSelectorLabels" -}}
app.kubernetes.io/name: {{ include "botfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: admin
{{- end }}

{{- define "botfleet.adminLabels" -}}
helm.sh/chart: {{ include "botfleet.chart" . }}
{{ include "botfleet.adminSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: botfleet
{{- end }}

{{/* The Secret holding the admin role's session secret: the user's, or the one the chart makes. */}}
{{- define "botfleet.adminSessionSecretName" -}}
{{- default (printf "%s-session" (include "botfleet.adminFullname" .)) .Values.admin.sessionSecret.existingSecret }}
{{- end }}

{{- define "botfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "botfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "botfleet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "botfleet.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (default .Chart.AppVersion .Values.runtime.image.tag) }}
{{- end }}

{{/* The operator's Service label that prometheus-operator turns into the job label
(ServiceMonitor jobLabel), so alerts can say up{job="botfleet-operator"}. */}}
{{- define "botfleet.scrapeJobLabel" -}}
botfleet.io/scrape-job
{{- end }}

{{/* Checks that span several values (the schema checks each value alone). */}}
{{- define "botfleet.validate" -}}
{{- if and .Values.clusterWide (not (empty .Values.watchNamespaces)) }}
{{- fail "clusterWide=true watches every namespace: set watchNamespaces to [] (or keep clusterWide=false and list the namespaces)" }}
{{- end }}
{{- if and (not .Values.clusterWide) (empty .Values.watchNamespaces) }}
{{- fail "watchNamespaces is empty: list the namespaces that hold bots, or set clusterWide=true to watch all of them" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without a Lease every replica would reconcile the same bots" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no node could ever be drained" }}
{{- end }}
{{- end }}

{{/*
What the operator may do to the objects it reads and owns, in every namespace it watches.
Rendered into a ClusterRole (all namespaces) or into one Role per watched namespace.
No wildcards; no deletecollection; no pods, no exec, no RBAC objects.
*/}}
{{- define "botfleet.rules" -}}
# The custom resources: read them, add the finalizer and annotations (patch/update).
- apiGroups: ["botfleet.io"]
  resources: ["botinstances", "vipplans", "discountcampaigns", "ratelimitpolicies"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Their status subresources: conditions, observedGeneration, config hash, token fingerprint.
- apiGroups: ["botfleet.io"]
  resources: ["botinstances/status", "vipplans/status", "discountcampaigns/status", "ratelimitpolicies/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion on objects owned by a BotInstance need this.
- apiGroups: ["botfleet.io"]
  resources: ["botinstances/finalizers"]
  verbs: ["update"]
# What each BotInstance owns: applied with server-side apply, drift reverted, deleted with it.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Secrets: token Secrets are read (get) and watched by label (botfleet.io/bot-token=true, metadata
# only); the operator writes only its own two per bot (<bot>-webhook, <bot>-runtime-token) with
# server-side apply (create + patch) after checking their owner reference, and creates (POST,
# then only get) the namespace's payload keys, botfleet-payload-keys. No update, no delete:
# garbage collection removes its Secrets with their BotInstance. RBAC cannot narrow patch to
# those Secrets (their names are per bot, resourceNames cannot hold them): the chart's
# ValidatingAdmissionPolicy (botfleet.secretAdmission below) does. See docs/DEPLOY.md, "What the
# operator may do to Secrets".
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The runtime pods, read only (watched by the managed-by label): a runtime that cannot start
# (it exits, e.g. on a Redis without persistence, or its container cannot be created) makes its
# bot Ready=False RuntimeFailed with the pod's termination message, and a Warning Event.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Only used when the ServiceMonitor CRD is installed.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events on the resources, through either events API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
CRD discovery, cluster-wide: only prometheus-operator's ServiceMonitor CRD, by name (see rbac.yaml).
*/}}
{{- define "botfleet.crdDiscoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["servicemonitors.monitoring.coreos.com"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
The ValidatingAdmissionPolicy's rule (templates/admissionpolicy.yaml adds the match condition on
the operator's ServiceAccount): an update, patch (an UPDATE to admission) or delete of a Secret is
allowed only when the Secret as it was is the operator's own, i.e. labelled
app.kubernetes.io/managed-by=botfleet-operator AND controlled by a BotInstance. That is exactly
<bot>-webhook and <bot>-runtime-token. Creating is not matched (a server-side apply that creates
is a CREATE): users' token Secrets and the payload keys (labelled, but owned by no bot) can never
be changed by the operator. Plain YAML: operator/tests/apiserver.rs loads it onto a real API server.
*/}}
{{- define "botfleet.secretAdmission" -}}
matchConstraints:
  resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["UPDATE", "DELETE"]
      resources: ["secrets"]
validations:
  - expression: >-
      has(oldObject.metadata.labels)
      && 'app.kubernetes.io/managed-by' in oldObject.metadata.labels
      && oldObject.metadata.labels['app.kubernetes.io/managed-by'] == 'botfleet-operator'
      && has(oldObject.metadata.ownerReferences)
      && oldObject.metadata.ownerReferences.exists(o, o.kind == 'BotInstance'
      && o.apiVersion.startsWith('botfleet.io/') && has(o.controller) && o.controller == true)
    messageExpression: >-
      'the BotFleet operator may change only its own Secrets (labelled app.kubernetes.io/managed-by=botfleet-operator
      and controlled by a BotInstance); Secret ' + oldObject.metadata.name + ' is not one'
    reason: Forbidden
{{- end }}

{{/* Only with runtime.networkPolicy.enabled: the per-bot NetworkPolicies the operator owns. */}}
{{- define "botfleet.networkPolicyRules" -}}
{{- if .Values.runtime.networkPolicy.enabled }}
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- end }}

{{/*
The standard labels merged with extra ones (extra wins), for objects whose labels users extend
so that no key appears twice. Call with (dict "ctx" $ "extra" $map).
*/}}
{{- define "botfleet.labelsWith" -}}
{{- $labels := include "botfleet.labels" .ctx | fromYaml }}
{{- toYaml (mustMergeOverwrite $labels (default (dict) .extra)) }}
{{- end }}
