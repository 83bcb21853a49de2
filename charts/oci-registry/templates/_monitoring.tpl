{{/*
Helpers of the Grafana dashboard and the PrometheusRule. Values that end up
inside PromQL are checked here, so a typo fails at render time instead of
giving an alert that never fires.
*/}}

{{/* metrics.registryNamespaceLabel, validated as a Prometheus label name. */}}
{{- define "oci-registry.registryNamespaceLabel" -}}
{{- $l := toString .Values.metrics.registryNamespaceLabel }}
{{- if not (regexMatch `^[a-zA-Z_][a-zA-Z0-9_]*$` $l) }}
{{- fail (printf "metrics.registryNamespaceLabel must be a Prometheus label name such as exported_namespace, got %q" $l) }}
{{- end }}
{{- $l }}
{{- end }}

{{/* prometheusRule.selector, validated as a list of PromQL label matchers (label="value", ...). */}}
{{- define "oci-registry.ruleSelector" -}}
{{- $s := trim (toString (default "" .Values.prometheusRule.selector)) }}
{{- $matcher := `[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"` }}
{{- if and $s (not (regexMatch (printf `^%s(\s*,\s*%s)*$` $matcher $matcher) $s)) }}
{{- fail (printf "prometheusRule.selector must be PromQL label matchers like job=\"mirror-oci-registry\", got %q" $s) }}
{{- end }}
{{- $s }}
{{- end }}

{{/* A duration value (Prometheus syntax), validated: (list "key" value). */}}
{{- define "oci-registry.promDuration" -}}
{{- $key := index . 0 }}
{{- $d := toString (index . 1) }}
{{- if not (regexMatch `^([0-9]+(ms|s|m|h|d|w|y))+$` $d) }}
{{- fail (printf "%s must be a Prometheus duration like 5m or 1h30m, got %q" $key $d) }}
{{- end }}
{{- $d }}
{{- end }}

{{/* A threshold value, validated as a non-negative number: (list "key" value). */}}
{{- define "oci-registry.promNumber" -}}
{{- $key := index . 0 }}
{{- $n := toString (index . 1) }}
{{- if not (regexMatch `^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$` $n) }}
{{- fail (printf "%s must be a non-negative number, got %q" $key $n) }}
{{- end }}
{{- $n }}
{{- end }}
