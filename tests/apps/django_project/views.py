from django.http import HttpResponse, JsonResponse


def index(request):
    return HttpResponse("Hello from Django", content_type="text/plain")


def info(request):
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": {k: request.GET.getlist(k) for k in request.GET},
            "body_len": len(request.body),
        }
    )
