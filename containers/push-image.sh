#!/usr/bin/env bash
# Build the job image for linux/amd64 (what SageMaker runs), push it to the stack's ECR repository and
# print the JobImageUri to deploy, by digest. Needs docker (23 or newer, with buildx) and the AWS CLI.
# Usage (from the Makefile): STACK=cvpipe IMAGE_TAG=<content hash> containers/push-image.sh
set -euo pipefail
: "${STACK:?set STACK to the stack name}" "${IMAGE_TAG:?set IMAGE_TAG}"
cd "$(dirname "$0")"

fail() { echo "make image: $*" >&2; exit 1; }

command -v docker >/dev/null || fail "docker is not installed: install Docker (https://docs.docker.com/get-docker/) and run make image again"
command -v aws >/dev/null || fail "the AWS CLI is not installed: install it (https://aws.amazon.com/cli/) and configure credentials"
docker info >/dev/null 2>&1 || fail "docker is installed but its engine is not running: start it and run make image again"

repository_uri=$(aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='JobRepositoryUri'].OutputValue" --output text) ||
    fail "cannot read stack $STACK: deploy it first (sam build && sam deploy --guided), or set STACK=NAME"
if [ -z "$repository_uri" ] || [ "$repository_uri" = None ]; then
    fail "stack $STACK has no JobRepositoryUri output: deploy this version of template.yaml first (sam build && sam deploy)"
fi
registry=${repository_uri%%/*}
repository=${repository_uri#*/}
region=$(cut -d. -f4 <<<"$registry")

pushed_digest() {
    aws ecr describe-images --region "$region" --repository-name "$repository" \
        --image-ids imageTag="$IMAGE_TAG" --query 'imageDetails[0].imageDigest' --output text 2>/dev/null || true
}

digest=$(pushed_digest)
if [ -z "$digest" ] || [ "$digest" = None ]; then
    aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
    # One plain image manifest: SageMaker does not take the attestation index buildx adds by default.
    docker build --platform linux/amd64 --provenance=false --tag "$repository_uri:$IMAGE_TAG" .
    docker push "$repository_uri:$IMAGE_TAG"
    digest=$(pushed_digest)
    [ -n "$digest" ] && [ "$digest" != None ] || fail "pushed $repository_uri:$IMAGE_TAG but ECR does not list it"
else
    echo "make image: $repository_uri:$IMAGE_TAG is already pushed (same sources)" >&2
fi

echo "JobImageUri=$repository_uri@$digest"
echo "make image: deploy it with: sam deploy --parameter-overrides JobImageUri=$repository_uri@$digest" >&2
