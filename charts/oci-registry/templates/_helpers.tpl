{{/* Chart name, overridable with nameOverride. */}}
{{- define "oci-registry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects, at most 63 characters (DNS label).
When the release name already contains the chart name, the release name is used.
*/}}
{{- define "oci-registry.fullname" -}}
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

{{/* "<fullname>-<suffix>", truncated so the result stays a valid name. */}}
{{- define "oci-registry.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "oci-registry.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "oci-registry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "oci-registry.labels" -}}
helm.sh/chart: {{ include "oci-registry.chart" . }}
{{ include "oci-registry.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: mirror
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the mirror pods; never change them after install. */}}
{{- define "oci-registry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oci-registry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oci-registry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oci-registry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oci-registry.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}
{{- end }}

{{/* storage.type, validated. */}}
{{- define "oci-registry.storageType" -}}
{{- $t := toString .Values.storage.type }}
{{- if not (has $t (list "filesystem" "s3")) }}
{{- fail (printf "storage.type must be \"filesystem\" or \"s3\", got %q" $t) }}
{{- end }}
{{- $t }}
{{- end }}

{{/*
The workload kind:
  s3                                               -> Deployment
  filesystem, persistence.enabled, no existingClaim -> StatefulSet (volumeClaimTemplates)
  filesystem, persistence.existingClaim             -> Deployment with that claim
  filesystem, persistence.enabled=false             -> Deployment with an emptyDir
*/}}
{{- define "oci-registry.workloadKind" -}}
{{- if and (eq (include "oci-registry.storageType" .) "filesystem") .Values.persistence.enabled (not .Values.persistence.existingClaim) }}
{{- "StatefulSet" }}
{{- else }}
{{- "Deployment" }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding upstreams.yaml. */}}
{{- define "oci-registry.upstreamConfigSecretName" -}}
{{- if .Values.upstreamConfig.existingSecret }}
{{- .Values.upstreamConfig.existingSecret }}
{{- else }}
{{- include "oci-registry.suffixed" (list . "upstreams") }}
{{- end }}
{{- end }}

{{/* "true" when the pod gets an upstream config file. */}}
{{- define "oci-registry.hasUpstreamConfig" -}}
{{- if or .Values.upstreamConfig.existingSecret .Values.upstreams }}true{{ end }}
{{- end }}

{{- define "oci-registry.upstreamConfigFile" -}}
{{- printf "%s/upstreams.yaml" (trimSuffix "/" .Values.upstreamConfig.mountPath) }}
{{- end }}

{{/*
The upstream config file (a YAML list). Checked here: every entry is a mapping
with namespace and host, and no namespace is listed twice. The mirror checks
the other keys and their types when it starts (see example.yaml).
*/}}
{{- define "oci-registry.upstreamsYaml" -}}
{{- $seen := dict }}
{{- range $i, $u := .Values.upstreams }}
{{- if not (kindIs "map" $u) }}
{{- fail (printf "upstreams[%d] must be a mapping with namespace and host" $i) }}
{{- end }}
{{- if not $u.namespace }}
{{- fail (printf "upstreams[%d]: namespace is required" $i) }}
{{- end }}
{{- if not $u.host }}
{{- fail (printf "upstreams[%d] (namespace %s): host is required" $i $u.namespace) }}
{{- end }}
{{- if hasKey $seen (toString $u.namespace) }}
{{- fail (printf "upstreams: namespace %s is configured twice" $u.namespace) }}
{{- end }}
{{- $_ := set $seen (toString $u.namespace) true }}
{{- end }}
{{- toYaml .Values.upstreams }}
{{- end }}

{{/* Name of the Secret holding UPSTREAM_CREDENTIALS, empty when there is none. */}}
{{- define "oci-registry.upstreamCredentialsSecretName" -}}
{{- if .Values.upstreamCredentials.existingSecret }}
{{- .Values.upstreamCredentials.existingSecret }}
{{- else if .Values.upstreamCredentials.credentials }}
{{- include "oci-registry.suffixed" (list . "upstream-credentials") }}
{{- end }}
{{- end }}

{{- define "oci-registry.upstreamCredentialsSecretKey" -}}
{{- if .Values.upstreamCredentials.existingSecret }}
{{- .Values.upstreamCredentials.existingSecretKey }}
{{- else }}
{{- "credentials.json" }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the S3 keys, empty when the SDK default chain (IRSA) is used. */}}
{{- define "oci-registry.s3SecretName" -}}
{{- $c := .Values.storage.s3.credentials }}
{{- if $c.existingSecret }}
{{- $c.existingSecret }}
{{- else if or $c.accessKey $c.secretKey }}
{{- if not (and $c.accessKey $c.secretKey) }}
{{- fail "storage.s3.credentials: set both accessKey and secretKey (or neither, for IRSA / the AWS default chain)" }}
{{- end }}
{{- include "oci-registry.suffixed" (list . "s3") }}
{{- end }}
{{- end }}

{{- define "oci-registry.terminationGracePeriodSeconds" -}}
{{- $shutdown := int .Values.shutdownGracePeriodSeconds }}
{{- if or (kindIs "invalid" .Values.terminationGracePeriodSeconds) (eq (toString .Values.terminationGracePeriodSeconds) "") }}
{{- add $shutdown 15 }}
{{- else }}
{{- $t := int .Values.terminationGracePeriodSeconds }}
{{- if le $t $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than shutdownGracePeriodSeconds (%d), or Kubernetes kills the mirror before its graceful shutdown ends" $t $shutdown) }}
{{- end }}
{{- $t }}
{{- end }}
{{- end }}

{{- define "oci-registry.spoolDir" -}}
/var/spool/oci-registry
{{- end }}

{{/* Host part of --listen; IPv6 addresses get brackets. */}}
{{- define "oci-registry.listenHost" -}}
{{- $h := toString .Values.listenHost }}
{{- if and (contains ":" $h) (not (hasPrefix "[" $h)) }}
{{- printf "[%s]" $h }}
{{- else }}
{{- $h }}
{{- end }}
{{- end }}

{{/* The headless Service the replicas find each other through. */}}
{{- define "oci-registry.peersServiceName" -}}
{{- include "oci-registry.suffixed" (list . "peers") }}
{{- end }}

{{/* `--peers`: the peers Service's A/AAAA records, re-resolved by every replica. */}}
{{- define "oci-registry.peersUrl" -}}
{{- printf "dns+http://%s.%s.svc.%s:%d" (include "oci-registry.peersServiceName" .) .Release.Namespace (trimSuffix "." (toString .Values.peers.clusterDomain)) (int .Values.containerPort) }}
{{- end }}

{{/* Container arguments: global flags, then the storage subcommand. */}}
{{- define "oci-registry.args" -}}
{{- $args := list "--listen" (printf "%s:%d" (include "oci-registry.listenHost" .) (int .Values.containerPort)) }}
{{- if include "oci-registry.hasUpstreamConfig" . }}
{{- $args = concat $args (list "--upstream-config-file" (include "oci-registry.upstreamConfigFile" .)) }}
{{- end }}
{{- if .Values.defaultNamespace }}
{{- $args = concat $args (list "--default-namespace" (toString .Values.defaultNamespace)) }}
{{- end }}
{{- if .Values.logLevel }}
{{- $args = concat $args (list "--log-level" (toString .Values.logLevel)) }}
{{- end }}
{{- if .Values.allowUnlistedNamespaces }}
{{- $args = append $args "--allow-unlisted-namespaces" }}
{{- end }}
{{- if .Values.metrics.separatePort }}
{{- $args = concat $args (list "--metrics-listen" (printf "%s:%d" (include "oci-registry.listenHost" .) (int .Values.metrics.port))) }}
{{- end }}
{{- $args = concat $args (list "--spool-dir" (include "oci-registry.spoolDir" .)) }}
{{- $args = concat $args (list "--shutdown-grace-period" (printf "%ds" (int .Values.shutdownGracePeriodSeconds))) }}
{{- if .Values.peers.enabled }}
{{- $args = concat $args (list "--peers" (include "oci-registry.peersUrl" .)) }}
{{- if .Values.peers.cacheCopies }}
{{- if ne (include "oci-registry.storageType" .) "filesystem" }}
{{- fail "peers.cacheCopies is for storage.type filesystem (in s3 mode every replica reads the one bucket)" }}
{{- end }}
{{- $args = append $args "--peer-cache-copies" }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
{{- $args = append $args (toString .) }}
{{- end }}
{{- if eq (include "oci-registry.storageType" .) "s3" }}
{{- $s3 := .Values.storage.s3 }}
{{- $args = concat $args (list "s3" "--bucket" (required "storage.s3.bucket is required when storage.type is s3" $s3.bucket | toString)) }}
{{- if $s3.region }}
{{- $args = concat $args (list "--region" (toString $s3.region)) }}
{{- end }}
{{- if $s3.host }}
{{- $args = concat $args (list "--host" (toString $s3.host)) }}
{{- end }}
{{- if $s3.prefix }}
{{- $args = concat $args (list "--prefix" (toString $s3.prefix)) }}
{{- end }}
{{- if $s3.pathStyle }}
{{- $args = append $args "--path-style" }}
{{- end }}
{{- if $s3.redirect }}
{{- $args = append $args "--redirect" }}
{{- end }}
{{- else }}
{{- $args = concat $args (list "filesystem" "--root" (required "storage.filesystem.root is required" .Values.storage.filesystem.root | toString)) }}
{{- end }}
{{- toYaml $args }}
{{- end }}

{{/* Pod anti-affinity preset, used when .Values.affinity is empty. */}}
{{- define "oci-registry.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if eq (toString .Values.podAntiAffinityPreset) "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "oci-registry.selectorLabels" . | nindent 12 }}
{{- else if eq (toString .Values.podAntiAffinityPreset) "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "oci-registry.selectorLabels" . | nindent 10 }}
{{- else if ne (toString .Values.podAntiAffinityPreset) "" }}
{{- fail (printf "podAntiAffinityPreset must be \"soft\", \"hard\" or \"\", got %q" (toString .Values.podAntiAffinityPreset)) }}
{{- end }}
{{- end }}

{{/* A probe: the handler is fixed, the timings come from values (without "enabled"). */}}
{{- define "oci-registry.probe" -}}
{{- $settings := index . 0 }}
{{- $path := index . 1 -}}
httpGet:
  path: {{ $path }}
  port: http
{{- with omit $settings "enabled" "httpGet" "exec" "tcpSocket" "grpc" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the StatefulSet. */}}
{{- define "oci-registry.podTemplate" -}}
{{- $annotations := dict }}
{{- if and .Values.upstreams (not .Values.upstreamConfig.existingSecret) }}
{{- $_ := set $annotations "checksum/upstreams" (include "oci-registry.upstreamsYaml" . | sha256sum) }}
{{- end }}
{{- if and .Values.upstreamCredentials.credentials (not .Values.upstreamCredentials.existingSecret) }}
{{- $_ := set $annotations "checksum/upstream-credentials" (toJson .Values.upstreamCredentials.credentials | sha256sum) }}
{{- end }}
{{- $annotations = merge (deepCopy (default (dict) .Values.podAnnotations)) $annotations -}}
metadata:
  labels:
    {{- include "oci-registry.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "oci-registry.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ include "oci-registry.terminationGracePeriodSeconds" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: oci-registry
      image: {{ include "oci-registry.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "oci-registry.args" . | nindent 8 }}
      env:
        - name: TMPDIR
          value: /tmp
        {{- if .Values.peers.enabled }}
        # How the peers reach this replica (--advertise defaults to http://$POD_IP:<port>).
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- end }}
        {{- with include "oci-registry.upstreamCredentialsSecretName" . }}
        - name: UPSTREAM_CREDENTIALS
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ include "oci-registry.upstreamCredentialsSecretKey" $ }}
        {{- end }}
        {{- if eq (include "oci-registry.storageType" .) "s3" }}
        {{- with include "oci-registry.s3SecretName" . }}
        - name: S3_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.storage.s3.credentials.accessKeyKey }}
        - name: S3_SECRET_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.storage.s3.credentials.secretKeyKey }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
        {{- if .Values.metrics.separatePort }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- end }}
      {{- if .Values.startupProbe.enabled }}
      startupProbe:
        {{- include "oci-registry.probe" (list .Values.startupProbe "/healthz") | nindent 8 }}
      {{- end }}
      {{- if .Values.livenessProbe.enabled }}
      livenessProbe:
        {{- include "oci-registry.probe" (list .Values.livenessProbe "/healthz") | nindent 8 }}
      {{- end }}
      {{- if .Values.readinessProbe.enabled }}
      readinessProbe:
        {{- include "oci-registry.probe" (list .Values.readinessProbe "/readyz") | nindent 8 }}
      {{- end }}
      {{- with .Values.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: spool
          mountPath: {{ include "oci-registry.spoolDir" . }}
        {{- if eq (include "oci-registry.storageType" .) "filesystem" }}
        - name: data
          mountPath: {{ .Values.storage.filesystem.root }}
        {{- end }}
        {{- if include "oci-registry.hasUpstreamConfig" . }}
        - name: upstream-config
          mountPath: {{ .Values.upstreamConfig.mountPath }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with .Values.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        {{- with .Values.tmpVolume.medium }}
        medium: {{ . }}
        {{- end }}
        {{- with .Values.tmpVolume.sizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
    - name: spool
      emptyDir:
        {{- with .Values.spool.medium }}
        medium: {{ . }}
        {{- end }}
        {{- with .Values.spool.sizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
    {{- if eq (include "oci-registry.storageType" .) "filesystem" }}
    {{- if and .Values.persistence.enabled .Values.persistence.existingClaim }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim }}
    {{- else if not .Values.persistence.enabled }}
    - name: data
      emptyDir:
        {{- with .Values.persistence.emptyDirSizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
    {{- end }}
    {{- end }}
    {{- if include "oci-registry.hasUpstreamConfig" . }}
    - name: upstream-config
      secret:
        secretName: {{ include "oci-registry.upstreamConfigSecretName" . }}
        {{- /* 0440 (288), readable through fsGroup; 0444 (292) when there is no fsGroup */}}
        defaultMode: {{ ternary 288 292 (not (empty (dig "fsGroup" "" (default (dict) .Values.podSecurityContext)))) }}
        items:
          - key: upstreams.yaml
            path: upstreams.yaml
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with (include "oci-registry.affinity" .) }}
  affinity:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  {{- $constraints := list }}
  {{- range . }}
  {{- $selector := dict "labelSelector" (dict "matchLabels" (include "oci-registry.selectorLabels" $ | fromYaml)) }}
  {{- $constraints = append $constraints (ternary . (merge $selector .) (hasKey . "labelSelector")) }}
  {{- end }}
  topologySpreadConstraints:
    {{- toYaml $constraints | nindent 4 }}
  {{- end }}
{{- end }}
