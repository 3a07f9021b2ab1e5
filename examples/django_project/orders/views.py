"""POST /orders -> 302 /orders/<id> -> GET: the flow that goes stale without rwsplit."""

from django.db import transaction
from django.http import HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Order


@csrf_exempt
def create_order(request):
    with transaction.atomic():  # runs on the primary
        order = Order.objects.create(
            item=request.POST["item"], quantity=int(request.POST.get("quantity", 1))
        )
    return HttpResponseRedirect(f"/orders/{order.pk}")


def show_order(request, pk):
    # A plain read in autocommit: a replica, which first applies this user's last write.
    order = Order.objects.filter(pk=pk).first()
    if order is None:
        return JsonResponse({"found": False}, status=404)
    return JsonResponse({"found": True, "item": order.item, "quantity": order.quantity})


def count_orders(request):
    return JsonResponse({"count": Order.objects.count()})
